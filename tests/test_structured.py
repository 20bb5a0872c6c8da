"""Structured output on the real binaries: JSON schema and GBNF grammar, both modes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from jazzmine.local import LLMInvalidRequestError, LocalLLM, MessagePart, MockReply, MockTransport

# Nested objects, enums, arrays and required fields. Kept to few tokens: llama.cpp's
# grammar sampling checks every vocabulary entry at each token (49k for the default
# model; on Gemma's 262k it cost about half a second a token).
PERSON = {
    "type": "object",
    "properties": {
        "mood": {"type": "string", "enum": ["happy", "sad", "calm"]},
        "likes": {"type": "array", "items": {"enum": ["chess", "golf"]}, "maxItems": 2},
        "home": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome"]}},
            "required": ["city"],
        },
    },
    "required": ["mood", "likes", "home"],
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
EXTRACT = [MessagePart("user", "Extract the person: Alice, 30, calm, likes chess, lives in Paris.")]
YES_NO = 'root ::= ("yes" | "no") " because " [a-z ]{1,12}'


@pytest.fixture(params=["per-call", "warm"])
def llm(request: pytest.FixtureRequest, completion_bin: str, model_path: str):  # type: ignore[no-untyped-def]
    keep_alive = None if request.param == "per-call" else -1
    model = LocalLLM(
        binary_path=completion_bin, model=model_path, seed=5, max_tokens=60, keep_alive=keep_alive
    )
    yield model
    model.close()


def all_methods(llm: LocalLLM, messages: list[MessagePart], **options: Any) -> list[str]:
    async def async_ones() -> list[str]:
        reply = await llm.agenerate(messages, **options)
        return [reply.text, "".join([piece async for piece in llm.astream(messages, **options)])]

    return [
        llm.generate(messages, **options).text,
        "".join(llm.stream(messages, **options)),
        *asyncio.run(async_ones()),
    ]


def test_json_schema_replies_parse_and_validate_in_every_method(llm: LocalLLM) -> None:
    texts = all_methods(llm, EXTRACT, response_format=RESPONSE_FORMAT)
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)
    assert len(set(texts)) == 1  # seeded, temperature 0: the same reply every way
    reply = llm.generate(EXTRACT, response_format=RESPONSE_FORMAT)
    assert reply.finish_reason == "stop"


def test_json_object_and_a_schema_given_to_the_constructor(
    completion_bin: str, model_path: str
) -> None:
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        max_tokens=160,
        response_format=RESPONSE_FORMAT,
    )
    jsonschema.validate(json.loads(llm.generate(EXTRACT).text), PERSON)
    reply = llm.generate(EXTRACT, response_format={"type": "json_object"}, max_tokens=3)
    assert reply.text.startswith("{")


def test_a_cut_reply_is_returned_as_it_is_with_length(llm: LocalLLM) -> None:
    reply = llm.generate(EXTRACT, response_format=RESPONSE_FORMAT, max_tokens=3)
    assert reply.finish_reason == "length"
    assert reply.text.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


def test_grammar_replies_match_the_grammar(llm: LocalLLM) -> None:
    messages = [MessagePart("user", "Is the sky blue? Answer yes or no and say why.")]
    for text in all_methods(llm, messages, grammar=YES_NO):
        assert re.fullmatch(r"(yes|no) because [a-z ]{1,12}", text), text


def test_rejected_grammar_and_schema_raise_with_llama_cpps_message(llm: LocalLLM) -> None:
    with pytest.raises(LLMInvalidRequestError, match="grammar"):
        llm.generate(EXTRACT, grammar='root ::= "yes" | undefined-rule\n')
    bad_schema = {"type": "object", "properties": {"a": {"type": "strin"}}}
    with pytest.raises(LLMInvalidRequestError, match="unrecognized type strin"):
        llm.generate(
            EXTRACT,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": bad_schema},
            },
        )
    assert llm.generate(EXTRACT, max_tokens=2).usage.completion_tokens >= 1  # still usable


def test_a_p_binary_cannot_take_a_schema(make_script: Callable[..., str], tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    script = make_script(
        "plain",
        f"""
        import sys
        if "--help" in sys.argv: print("usage: plain -p PROMPT"); sys.exit(0)
        open({str(marker)!r}, "w").write("ran")
        print("text")
        """,
    )
    llm = LocalLLM(binary_path=script, model="x")
    with pytest.raises(LLMInvalidRequestError, match="cannot constrain"):
        llm.generate(EXTRACT, response_format=RESPONSE_FORMAT)
    with pytest.raises(LLMInvalidRequestError, match="cannot constrain"):
        llm.generate(EXTRACT, grammar=YES_NO)
    templated = LocalLLM(binary_path=script, model="x", argv_template=["-p", "{prompt}"])
    with pytest.raises(LLMInvalidRequestError, match="cannot constrain"):
        templated.generate(EXTRACT, grammar=YES_NO)
    assert not marker.exists()


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        "json",
    ],
)
def test_malformed_response_formats_are_refused(response_format: Any) -> None:
    with pytest.raises(LLMInvalidRequestError):
        LocalLLM(binary_path="/bin/true", model="x", response_format=response_format)


def test_a_per_call_constraint_replaces_the_constructors() -> None:
    transport = MockTransport(lambda request: MockReply(["yes"]))
    llm = LocalLLM(
        model="x",
        response_format={"type": "json_object"},
        transport=transport,
        prompt_format="flat",
    )
    llm.generate(EXTRACT, grammar=YES_NO)
    request = transport.requests[-1]
    assert (request.grammar, request.json_schema) == (YES_NO, None)
    llm.generate(EXTRACT, response_format=None)
    request = transport.requests[-1]
    assert not request.constrained and "\nUser:" in request.stop_sequences
    with pytest.raises(LLMInvalidRequestError, match="not both"):
        LocalLLM(
            binary_path="/bin/true",
            model="x",
            response_format={"type": "json_object"},
            grammar=YES_NO,
        )
