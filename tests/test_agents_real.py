"""Tools and per-call sampling on the real binary and model, in both modes.

The default SmolLM2-135M-Instruct speaks ChatML: with its own template (no tool support)
calls take the generic JSON envelope; with the Qwen 2.5 fixture (ChatML with tools) they
take the Hermes ``<tool_call>`` format. Either way a forced choice must give calls whose
arguments validate, per call and warm, sync and async, streamed and joined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jazzmine.local import LocalLLM, MessagePart
from jazzmine.local.tools.validate import validate

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
QWEN25 = str(TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja")
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_timer",
            "description": "Start a timer",
            "parameters": {
                "type": "object",
                "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 600}},
                "required": ["minutes"],
            },
        },
    },
]
ASK = [MessagePart("user", "What is the weather in Paris, in celsius?")]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
MODES = {"per_call": {}, "warm": {"keep_alive": "5m"}}


@pytest.fixture(scope="module", params=["generic", "hermes"])
def template(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "generic" else QWEN25


@pytest.fixture(scope="module", params=list(MODES))
def agent(
    request: pytest.FixtureRequest, completion_bin: str, model_path: str, template: str | None
) -> Iterator[LocalLLM]:
    options: dict[str, Any] = dict(MODES[request.param])
    if template is not None:
        options["chat_template"] = template
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        tools=TOOLS,
        # one call a reply: a small model asked for several repeats its call until the
        # token limit cuts it (a typed error, as test_agents.py holds)
        parallel_tool_calls=False,
        max_tokens=64,
        temperature=0.0,
        seed=3,
        **options,
    )
    yield llm
    llm.close()


def assert_valid_weather_call(response: Any) -> None:
    assert response.finish_reason == "tool_calls", response.raw
    call = response.tool_calls[0]
    assert call.name == "get_weather"
    assert validate(call.arguments, WEATHER_SCHEMA) == []
    assert "<tool_call>" not in response.text and "tool_calls" not in response.text


@pytest.mark.parametrize("choice", ["required", "named"])
def test_a_forced_choice_gives_a_call_that_validates(agent: LocalLLM, choice: str) -> None:
    tool_choice = NAMED if choice == "named" else "required"
    response = agent.generate(ASK, tool_choice=tool_choice)
    assert_valid_weather_call(response)
    assert response.api_metrics is not None
    # the Qwen template lists the tools itself; SmolLM2's own gets them in a system text
    native = "<tools>" in agent.build_request(ASK).prompt
    assert response.api_metrics["tool_family"] == ("hermes" if native else "generic")


def test_streamed_and_async_calls_match_the_joined_one(agent: LocalLLM) -> None:
    joined = agent.generate(ASK, tool_choice=NAMED)
    stream = agent.stream(ASK, tool_choice=NAMED)
    text = "".join(stream)
    assert text == joined.text
    assert stream.response.tool_calls == joined.tool_calls

    async def run() -> tuple[Any, list[Any]]:
        response = await agent.agenerate(ASK, tool_choice=NAMED)
        events = [event async for event in agent.astream(ASK, tool_choice=NAMED).events()]
        return response, events

    response, events = asyncio.run(run())
    assert response.tool_calls == joined.tool_calls
    assert [value for kind, value in events if kind == "tool_call"] == joined.tool_calls


def test_a_second_turn_with_the_tool_result_answers(agent: LocalLLM) -> None:
    first = agent.generate(ASK, tool_choice="required")
    call = first.tool_calls[0]
    history = [
        *ASK,
        MessagePart("assistant", "", tool_calls=[call.to_openai()]),
        MessagePart("tool", '{"temperature": 21, "sky": "clear"}', tool_call_id=call.id),
    ]
    request = agent.build_request(history, tool_choice="none")
    assert '{"temperature": 21, "sky": "clear"}' in request.prompt
    answer = agent.generate(history, tool_choice="none", max_tokens=24)
    assert answer.finish_reason in ("stop", "length")
    assert answer.text and answer.tool_calls == []


def test_sampling_options_reach_the_model_in_both_modes(
    completion_bin: str, model_path: str
) -> None:
    for mode in MODES.values():
        with LocalLLM(
            binary_path=completion_bin,
            model=model_path,
            seed=5,
            max_tokens=24,
            **mode,  # type: ignore[arg-type]
        ) as llm:
            greedy = llm.generate(ASK, temperature=0.0).text
            # top_k=1 leaves one candidate: a hot sampler becomes greedy again
            narrowed = llm.generate(ASK, temperature=1.5, top_k=1).text
            hot = llm.generate(ASK, temperature=1.5, top_p=0.95, min_p=0.01).text
            assert narrowed == greedy
            assert hot != greedy


QWEN3 = str(TEMPLATES / "Qwen-Qwen3-0.6B.jinja")


def thinking_llm(binary: str, model: str, mode: str, **options: Any) -> LocalLLM:
    """Greedy SmolLM2 on Qwen3's thinking template (both speak ChatML), in ``mode``."""
    return LocalLLM(
        binary_path=binary,
        model=model,
        chat_template=QWEN3,
        temperature=0.0,
        **MODES[mode],
        **options,
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_a_reasoning_budget_runs_thinking_then_answer_on_the_real_binary(
    completion_bin: str, model_path: str, mode: str
) -> None:
    # SmolLM2 speaks ChatML, so it runs Qwen3's thinking template. It never writes
    # <think> on its own: the block in the raw output is the first phase's grammar at
    # work (the model may leave it empty; test_agents.py holds the cap itself).
    with thinking_llm(completion_bin, model_path, mode, max_tokens=30, seed=1) as llm:
        response = llm.generate(ASK, reasoning=6)
        assert response.raw.startswith("<think>"), response.raw
        assert "<think>" not in response.text and "</think>" not in response.text
        assert response.text
        assert response.usage.completion_tokens <= 30
        stream = llm.stream(ASK, reasoning=6)
        assert "".join(stream) == response.text
        assert stream.response.reasoning == response.reasoning
        off = llm.build_request(ASK, reasoning=False)
        assert off.prompt.endswith("<think>\n\n</think>\n\n")


@pytest.mark.parametrize("mode", list(MODES))
def test_a_grammar_after_thinking_is_accepted_by_llama_cpp(
    completion_bin: str, model_path: str, mode: str
) -> None:
    with thinking_llm(completion_bin, model_path, mode, max_tokens=40) as llm:
        request = llm.build_request(ASK, grammar='root ::= "yes" | "no"')
        assert request.grammar is not None and "</think>" in request.grammar
        response = llm.generate(ASK, grammar='root ::= "yes" | "no"')
        assert response.text in ("yes", "no"), response.raw


def test_an_integer_range_holds_even_when_the_prompt_asks_past_it(agent: LocalLLM) -> None:
    ask = [MessagePart("user", "Set a timer for 5000 minutes.")]
    named = {"type": "function", "function": {"name": "set_timer"}}
    response = agent.generate(ask, tool_choice=named)
    (call,) = response.tool_calls
    assert 1 <= call.arguments["minutes"] <= 600, response.raw


def test_a_seeded_sampled_call_is_the_same_in_both_modes(
    completion_bin: str, model_path: str
) -> None:
    # n_ctx of its own: a server no other test shares, so no cached prefix (evaluated in
    # other batches, which can move the last digits of the logits) enters the comparison
    sampling = {
        "temperature": 0.8,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.1,
    }
    sea = [MessagePart("user", "Write one sentence about the sea.")]
    texts = []
    for mode in MODES.values():
        with LocalLLM(
            binary_path=completion_bin,
            model=model_path,
            max_tokens=24,
            seed=5,
            n_ctx=1024,
            **mode,  # type: ignore[arg-type]
        ) as llm:
            texts.append(llm.generate(sea, **sampling).text)  # type: ignore[arg-type]
            default = llm.generate(sea, temperature=0.8).text
            assert default != texts[-1]  # the options changed what was sampled
    assert texts[0] == texts[1]
