"""The call each of llama.cpp's own templates (the cached sdist's ``models/templates``)
writes after its generation prompt, fed back as the model's reply through
``MockTransport``: it comes back as the call, with no markup in ``.text``, for
tool_choice "auto" and "required", whole and streamed through ``events()``.

The templates come from the sdist the set-up downloads, so these tests need it
(``setup_result``: marked ``real``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.sdist_templates import (
    PARIS_CALL,
    QUESTION,
    TOOLS,
    Written,
    _turn_after_prompt,
    chat_template,
    template_files,
    written_call,
)

from jazzmine.local import LLMError, LocalLLM
from jazzmine.local.mock import MockReply, MockTransport
from jazzmine.local.types import MessagePart

# Templates that write a call this project does not read back yet, and why. The test
# checks that each still fails, so a fix shows up here. (None left: MiniMax M3, with
# "]<]minimax[>[" before every tag and parameters as tags named by their key, is learnt
# since the derivation knows both shapes.)
NOT_READ: set[str] = set()


@pytest.fixture(scope="module")
def written(setup_result: Any) -> dict[str, tuple[Path, Written]]:
    """Every sdist template that writes a call after its generation prompt."""
    found: dict[str, tuple[Path, Written]] = {}
    for path in template_files():
        call = written_call(chat_template(path))
        if call is not None:
            found[path.name] = (path, call)
    assert len(found) >= 40
    return found


def _llm(path: Path, reply: str, choice: str) -> LocalLLM:
    pieces = [reply[i : i + 4] for i in range(0, len(reply), 4)]
    return LocalLLM(
        transport=MockTransport(lambda request: MockReply(pieces)),
        chat_template=str(path),
        tools=TOOLS,
        tool_choice=choice,
    )


def _round_trip(path: Path, reply: str, choice: str, cities: list[str]) -> str | None:
    """None when the reply comes back as the calls (whole and streamed), else why not."""
    wanted = [("get_weather", {"city": city}) for city in cities]
    try:
        result = _llm(path, reply, choice).generate([QUESTION])
        events = list(_llm(path, reply, choice).stream([QUESTION]).events())
    except LLMError as error:
        return f"{type(error).__name__}: {error}"
    got = [(c.name, c.arguments) for c in result.tool_calls]
    if got != wanted:
        return f"calls {got}"
    streamed_text = "".join(value for kind, value in events if kind == "text")
    streamed = [(v.name, v.arguments) for k, v in events if k == "tool_call"]  # type: ignore[union-attr]
    if streamed != wanted:
        return f"streamed calls {streamed}"
    for text in (result.text, streamed_text):
        if text.strip():  # the reply is the call alone: any text left is its markup
            return f"markup in the text: {text!r}"
    return None


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_every_written_call_is_read_back(
    written: dict[str, tuple[Path, Written]], choice: str
) -> None:
    failures = {}
    for name, (path, call) in sorted(written.items()):
        why = _round_trip(path, call.reply, choice, ["Paris"])
        if (why is None) == (name in NOT_READ):
            failures[name] = why or "read back, but listed in NOT_READ"
    assert not failures, failures


def test_two_calls_are_read_back(written: dict[str, tuple[Path, Written]]) -> None:
    """Where a template writes two calls in one turn, both come back."""
    rome = {**PARIS_CALL, "id": "call67890"}
    rome["function"] = {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    tried, failures = 0, {}
    for name, (path, one) in sorted(written.items()):
        if name in NOT_READ:
            continue
        template = chat_template(path)
        turn = MessagePart("assistant", "", tool_calls=[PARIS_CALL, rome])
        two = _turn_after_prompt(template, [QUESTION], turn, tools=TOOLS)
        if two is None or "Rome" not in two.reply or "Paris" not in two.reply:
            continue
        tried += 1
        # the turn ends where the one call's turn ends (``written_call`` cut its end of
        # turn, "<end_of_sentence>", off: the model stops there)
        closing = one.reply[one.reply.rfind("Paris") + len("Paris") :]
        end = two.reply.rfind(closing)
        reply = two.reply[: end + len(closing)] if closing and end >= 0 else two.reply
        why = _round_trip(path, reply, "auto", ["Paris", "Rome"])
        if why is not None:
            failures[name] = why
    assert tried >= 20
    assert not failures, failures


# One template per shape of learnt format: XML parameters, arg_key/arg_value, DSML,
# numbered markers with JSON arguments, Python calls, a name marker with JSON,
# parameters as tags named by their key with a prefix before every tag.
GRAMMAR_TEMPLATES = [
    "MiniMax-M3.jinja",
    "Qwen3-Coder.jinja",
    "GLM-4.6.jinja",
    "deepseek-ai-DeepSeek-V3.2.jinja",
    "moonshotai-Kimi-K2.jinja",
    "LFM2.5-8B-A1B.jinja",
    "meetkai-functionary-medium-v3.1.jinja",
]


def test_minimax_m3_s_empty_thinking_block_stays_out_of_the_text(
    written: dict[str, tuple[Path, Written]],
) -> None:
    """MiniMax M3 starts a turn without reasoning with "</mm:think>" alone (its call
    turn too): an empty block, not text, whole and streamed, with or without tools."""
    path, call = written["MiniMax-M3.jinja"]
    assert call.reply.startswith("</mm:think>]<]minimax[>[<tool_call>")
    answer = "</mm:think>It is sunny."
    for tools in (None, TOOLS):
        llm = LocalLLM(
            transport=MockTransport(lambda request: MockReply([answer[:5], answer[5:]])),
            chat_template=str(path),
            tools=tools,
        )
        result = llm.generate([QUESTION])
        assert (result.text, result.reasoning) == ("It is sunny.", None)
        events = list(llm.stream([QUESTION]).events())
        assert "".join(str(v) for k, v in events if k == "text") == "It is sunny."


# bounded, so that the tiny default model cannot repeat itself up to max_tokens
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "enum": ["weather Paris", "news"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 9},
            },
            "required": ["query", "limit"],
        },
    },
}


@pytest.mark.parametrize("name", sorted(GRAMMAR_TEMPLATES))
def test_the_default_model_calls_in_the_template_s_format(
    completion_bin: str, model_path: str, name: str
) -> None:
    """The 135M default model, given the template and tool_choice "required", writes
    a call in that template's own format (the grammar holds it there), which reads back:
    the learnt format's reader takes nothing else, and no markup reaches the text."""
    from helpers.sdist_templates import template_dir

    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        chat_template=str(template_dir() / name),
        tools=[SEARCH],
        tool_choice="required",
        parallel_tool_calls=False,  # the tiny model would repeat its call to the end
        reasoning=False,
        temperature=0.0,
        max_tokens=120,
    )
    stream = llm.stream([MessagePart("user", "Search the weather in Paris.")])
    seen = [str(value) for kind, value in stream.events() if kind == "text"]
    response = stream.response
    assert response.api_metrics is not None
    assert response.api_metrics["tool_family"] == "derived"
    (call,) = response.tool_calls
    assert call.name == "search"
    assert call.arguments["query"] in ("weather Paris", "news")
    assert 1 <= call.arguments["limit"] <= 9
    assert response.text == "" and "".join(seen) == ""
