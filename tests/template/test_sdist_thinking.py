"""The thinking round trip on llama.cpp's own templates (the pinned sdist's 70).

For every template that writes reasoning into an assistant turn (``written_thinking``:
an answer with its reasoning, or a call with it where the template shows reasoning only
beside a call), the text the template writes after its generation prompt is fed back as
the model's reply through MockTransport: the reasoning must come back in ``.reasoning``
alone and the answer in ``.text`` alone, fed whole and streamed in small pieces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.sdist_templates import (
    ANSWER,
    QUESTION,
    REASONING,
    TOOLS,
    WrittenThinking,
    chat_template,
    template_dir,
    template_files,
    written_thinking,
)

from jazzmine.local import LocalLLM, MessagePart
from jazzmine.local.mock import MockReply, MockTransport, reply
from jazzmine.local.setup.run import SetupResult


@pytest.fixture(scope="module")
def thinking_templates(setup_result: SetupResult) -> list[tuple[Path, WrittenThinking]]:
    """(template file, its written turn) for each sdist template that writes reasoning;
    the sdist is the one the set-up downloaded."""
    found = []
    for path in template_files():
        written = written_thinking(chat_template(path))
        if written is not None:
            found.append((path, written))
    return found


def _pieces(text: str, size: int) -> MockReply:
    return reply(*(text[i : i + size] for i in range(0, len(text), size)))


def _problems(path: Path, written: WrittenThinking) -> list[str]:
    """What is wrong with the round trip of one template's turn ([] when nothing)."""
    options = {"tools": TOOLS} if written.call else {}
    problems = []
    for size in (len(written.reply), 1, 3):
        llm = LocalLLM(
            transport=MockTransport(lambda request, n=size: _pieces(written.reply, n)),
            chat_template=str(path),
            **options,  # type: ignore[arg-type]
        )
        response = llm.generate([QUESTION])
        stream = llm.stream([QUESTION])
        events = list(stream.events())
        thought = "".join(str(t) for kind, t in events if kind == "reasoning")
        said = "".join(str(t) for kind, t in events if kind == "text")
        got = (response.reasoning, response.text)
        if response.reasoning != REASONING:
            problems.append(f"pieces of {size}: reasoning {got}")
        if written.call:
            # what follows the thinking is the call (read back or not: that is the call
            # round trip's business), never the thinking or its markers
            after = response.text.strip()
            if REASONING in after or not written.reply.rstrip().endswith(after):
                problems.append(f"pieces of {size}: text {got}")
        elif response.text.strip() != ANSWER:
            problems.append(f"pieces of {size}: text {got}")
        if (thought, said) != (REASONING, response.text) or stream.response.text != said:
            problems.append(f"pieces of {size}: streamed {(thought, said)} against {got}")
    return problems


def test_every_template_that_writes_reasoning_is_found(
    thinking_templates: list[tuple[Path, WrittenThinking]],
) -> None:
    names = {path.name for path, _ in thinking_templates}
    # one of each way of writing it: the prompt opens the block, the model opens it,
    # other markers, an answer wrapper, reasoning only beside a call
    for expected in (
        "Qwen3.5-4B.jinja",
        "Qwen-Qwen3-0.6B.jinja",
        "MiniMax-M3.jinja",
        "Cohere2MoE.jinja",
        "google-gemma-4-31B-it.jinja",
    ):
        assert expected in names
    assert all(REASONING in written.reply for _, written in thinking_templates)


def test_the_thinking_round_trip_splits_reasoning_from_the_answer(
    thinking_templates: list[tuple[Path, WrittenThinking]],
) -> None:
    failures = {}
    for path, written in thinking_templates:
        problems = _problems(path, written)
        if problems:
            failures[path.name] = (written.reply, problems)
    assert not failures, failures


def test_a_response_format_after_the_thinking_on_the_real_binary(
    completion_bin: str, model_path: str
) -> None:
    """Qwen3.5's generation prompt opens the block ("<think>\\n"), so the reply starts
    inside it. With a budget, the default model thinks (at most 12 tokens), the block is
    closed as the template writes it, and the schema holds the answer alone."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    shape = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    ask = [MessagePart("user", "Which city is the capital of France? Answer in JSON.")]
    template = str(template_dir() / "Qwen3.5-4B.jinja")
    with LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        chat_template=template,
        temperature=0.0,
        max_tokens=60,
    ) as llm:
        request = llm.build_request(ask, response_format=shape)
        assert request.prompt.endswith("<think>\n")
        response = llm.generate(ask, response_format=shape, reasoning=12)
    assert response.reasoning, response.raw
    assert "</think>" not in response.reasoning and "<think>" not in response.text
    assert isinstance(json.loads(response.text), dict), response.raw


@pytest.mark.parametrize("name", ["LFM2.5-Instruct.jinja", "LFM2.5-8B-A1B.jinja"])
def test_templates_that_never_write_reasoning_still_have_a_think_block_split(
    setup_result: SetupResult, name: str
) -> None:
    """LFM2.5's templates cut "<think>...</think>" out of past turns but give no way to
    write reasoning that llama-server uses: the block a model trained on them writes
    first is read as reasoning all the same (the hand-written fallback)."""
    written = f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"
    llm = LocalLLM(
        transport=MockTransport(lambda request: _pieces(written, 2)),
        chat_template=str(template_dir() / name),
    )
    response = llm.generate([QUESTION])
    assert (response.reasoning, response.text) == (REASONING, ANSWER)


def test_gpt_oss_analysis_then_final_answer(setup_result: SetupResult) -> None:
    """GPT-OSS's template reads reasoning from ``thinking`` (llama.cpp copies it there):
    the probes find the analysis channel, its end, and the final channel's opening; the
    turn's "<|end|>" after the analysis is no stop (harmony ends turns with
    "<|return|>"/"<|call|>", as llama.cpp's vocabulary handling has it)."""
    written = (
        f"<|channel|>analysis<|message|>{REASONING}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{ANSWER}"
    )
    path = template_dir() / "openai-gpt-oss-120b.jinja"
    requests = []

    def handler(request: object) -> MockReply:
        requests.append(request)
        return _pieces(written, 4)

    llm = LocalLLM(transport=MockTransport(handler), chat_template=str(path))
    response = llm.generate([QUESTION])
    assert (response.reasoning, response.text) == (REASONING, ANSWER)
    stops = requests[0].stop_sequences  # type: ignore[attr-defined]
    assert "<|end|>" not in stops and "<|return|>" in stops


def test_ministral_thinking_part(setup_result: SetupResult) -> None:
    """Ministral 3 reads reasoning as a typed ``thinking`` content part (llama.cpp's
    handler writes it so): the probes find ``[THINK]...[/THINK]``."""
    written = f"[THINK]{REASONING}[/THINK]{ANSWER}"
    path = template_dir() / "mistralai-Ministral-3-14B-Reasoning-2512.jinja"
    llm = LocalLLM(
        transport=MockTransport(lambda request: _pieces(written, 2)), chat_template=str(path)
    )
    events = list(llm.stream([QUESTION]).events())
    assert "".join(str(t) for kind, t in events if kind == "reasoning") == REASONING
    assert "".join(str(t) for kind, t in events if kind == "text") == ANSWER
