"""Tools, reasoning and per-call sampling through LocalLLM, on the scripted transport.

The model's side is scripted (``MockTransport``): these tests hold what LocalLLM does
with a reply in each tool-call format, including the formats the small real models
cannot produce; test_agents_real.py runs the same calls on the real binary.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jazzmine.local import LLMInvalidRequestError, LLMToolCallError, LocalLLM, MessagePart
from jazzmine.local.mock import MockReply, MockTransport, reply
from jazzmine.local.request import GenerationRequest, RunOutcome

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [MessagePart("user", "Weather in Paris?")]
ENVELOPE = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}'


def scripted(*chunks: str, **options: Any) -> tuple[LocalLLM, MockTransport]:
    transport = MockTransport(lambda request: reply(*chunks), runs_llama_cpp=False)
    llm = LocalLLM(transport=transport, tools=[WEATHER], prompt_format="flat", **options)
    return llm, transport


def test_a_generic_call_becomes_tool_calls_and_no_text() -> None:
    llm, _ = scripted(ENVELOPE, tool_choice="required")
    response = llm.generate(ASK)
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert response.tool_calls[0].id.startswith("call_")
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    assert response.api_metrics is not None
    assert response.api_metrics["tool_family"] == "generic"


def test_a_streamed_call_in_small_pieces_is_on_the_final_response() -> None:
    llm, _ = scripted(*[ENVELOPE[i : i + 3] for i in range(0, len(ENVELOPE), 3)])
    stream = llm.stream(ASK)
    assert "".join(stream) == ""
    assert stream.response.tool_calls == llm.generate(ASK).tool_calls
    events = list(llm.stream(ASK).events())
    assert [kind for kind, _ in events] == ["tool_call"]
    assert events[0][1].arguments == {"city": "Paris"}


def test_auto_lets_the_model_answer_in_text() -> None:
    llm, _ = scripted('{"content": "It is sunny."}')
    response = llm.generate(ASK)
    assert (response.text, response.tool_calls, response.finish_reason) == (
        "It is sunny.",
        [],
        "stop",
    )


def test_async_calls_give_the_same_calls() -> None:
    llm, _ = scripted(ENVELOPE)

    async def both() -> tuple[Any, list[Any]]:
        response = await llm.agenerate(ASK)
        events = [event async for event in llm.astream(ASK).events()]
        return response, events

    response, events = asyncio.run(both())
    assert response.tool_calls == llm.generate(ASK).tool_calls
    assert events == [("tool_call", response.tool_calls[0])]


def test_a_call_that_breaks_the_schema_is_a_typed_error_with_the_raw_text() -> None:
    bad = '{"tool_calls": [{"name": "get_weather", "arguments": {"town": "Paris"}}]}'
    llm, _ = scripted(bad)
    with pytest.raises(LLMToolCallError) as caught:
        llm.generate(ASK)
    assert caught.value.partial_text == bad


def test_required_without_a_call_is_a_typed_error() -> None:
    llm, _ = scripted('{"content": "no"}', tool_choice="required")
    with pytest.raises(LLMToolCallError, match="requires a tool call"):
        llm.generate(ASK)


def test_the_request_carries_the_eager_and_the_lazy_grammar() -> None:
    llm, _ = scripted(ENVELOPE)
    request = llm.build_request(ASK, tool_choice="required")
    assert request.grammar is not None and "get_weather" in request.grammar
    assert request.server_grammar is not None
    assert request.server_grammar["grammar"]
    # the generic family's tool list is in the system message
    assert request.prompt.startswith("System: You can call these functions")


def test_tool_choice_none_sends_no_grammar_and_returns_no_call() -> None:
    llm, _ = scripted(ENVELOPE, tool_choice="none")
    request = llm.build_request(ASK)
    assert request.grammar is None and request.server_grammar is None
    response = llm.generate(ASK)
    assert (response.text, response.tool_calls, response.finish_reason) == ("", [], "stop")
    assert response.api_metrics is not None
    assert response.api_metrics["tool_calls_dropped"] == 1


def test_tool_choice_none_with_a_response_format_reads_the_answer_as_written() -> None:
    # the caller's schema shapes the answer: an object with "content" is the answer
    answer = '{"content": "sunny"}'
    llm, transport = scripted(answer, tool_choice="none")
    schema = {"type": "object", "properties": {"content": {"type": "string"}}}
    response = llm.generate(
        ASK, response_format={"type": "json_schema", "json_schema": {"schema": schema}}
    )
    assert transport.requests[-1].json_schema == schema
    assert (response.text, response.tool_calls) == (answer, [])
    assert response.api_metrics is not None and "tool_calls_dropped" not in response.api_metrics


def test_tools_and_a_response_format_together_are_refused() -> None:
    llm, _ = scripted(ENVELOPE)
    with pytest.raises(LLMInvalidRequestError, match="not both"):
        llm.generate(ASK, response_format={"type": "json_object"})


def test_a_named_function_that_is_not_a_tool_is_refused() -> None:
    llm, _ = scripted(ENVELOPE)
    with pytest.raises(LLMInvalidRequestError, match="not a tool"):
        llm.generate(ASK, tool_choice={"type": "function", "function": {"name": "nope"}})


def test_a_malformed_tool_is_refused_at_construction() -> None:
    with pytest.raises(LLMInvalidRequestError, match="type"):
        LocalLLM(transport=MockTransport(lambda r: reply("x")), tools=[{"name": "x"}])


def test_tools_per_call_replace_the_instance_tools() -> None:
    transport = MockTransport(lambda request: reply("plain"), runs_llama_cpp=False)
    llm = LocalLLM(transport=transport, prompt_format="flat")
    assert llm.build_request(ASK).grammar is None
    assert llm.build_request(ASK, tools=[WEATHER], tool_choice="required").grammar


def test_a_conversation_carries_calls_and_results() -> None:
    llm, transport = scripted('{"content": "Sunny, 21 C."}')
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    }
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    assert llm.generate(history).text == "Sunny, 21 C."
    assert "Tool: {" in transport.requests[-1].prompt


# ---------- sampling per call ----------


def test_sampling_options_reach_the_request_per_call_over_the_instance() -> None:
    transport = MockTransport(lambda request: reply("x"), runs_llama_cpp=False)
    llm = LocalLLM(transport=transport, top_p=0.9, top_k=40, repeat_penalty=1.1)
    request = llm.build_request(ASK, top_k=5, min_p=0.05, presence_penalty=-0.5)
    assert dict(request.sampling) == {
        "top_p": 0.9,
        "top_k": 5,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "presence_penalty": -0.5,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("top_p", 1.5), ("min_p", -0.1), ("top_k", 2.5), ("repeat_penalty", -1.0), ("top_p", "x")],
)
def test_bad_sampling_values_are_refused_the_same_way_per_call_and_at_construction(
    name: str, value: Any
) -> None:
    transport = MockTransport(lambda request: reply("x"))
    with pytest.raises(LLMInvalidRequestError) as at_construction:
        LocalLLM(transport=transport, **{name: value})
    with pytest.raises(LLMInvalidRequestError) as per_call:
        LocalLLM(transport=transport).generate(ASK, **{name: value})
    assert type(per_call.value) is type(at_construction.value)
    assert str(per_call.value) == str(at_construction.value)


def test_sampling_reaches_the_server_body_and_the_argv() -> None:
    from jazzmine.local.transports.argv import _sampling_args
    from jazzmine.local.transports.server.api import request_body

    request = GenerationRequest("p", 4, 0.0, 1, (), sampling=(("top_k", 5), ("min_p", 0.05)))
    body = request_body(request)
    assert (body["top_k"], body["min_p"]) == (5, 0.05)
    argv = _sampling_args(request)
    assert argv[argv.index("--top-k") + 1] == "5"
    assert argv[argv.index("--min-p") + 1] == "0.05"


# ---------- reasoning ----------

QWEN3 = TEMPLATES / "Qwen-Qwen3-0.6B.jinja"


def thinking_llm(*chunks: str, **options: Any) -> LocalLLM:
    transport = MockTransport(lambda request: reply(*chunks))
    return LocalLLM(transport=transport, chat_template=str(QWEN3), **options)


def test_thinking_is_kept_apart_from_the_answer() -> None:
    llm = thinking_llm("<think>\nThe user wants Paris.\n</think>\n\nParis.")
    response = llm.generate(ASK)
    assert (response.reasoning, response.text) == ("The user wants Paris.", "Paris.")
    assert response.api_metrics is not None and response.api_metrics["reasoning_tokens"] > 0


def test_a_closing_marker_split_across_pieces_stays_out_of_the_stream() -> None:
    llm = thinking_llm("<think>I think", " hard</th", "ink>\n\nHello", " there")
    stream = llm.stream(ASK)
    assert "".join(stream) == "Hello there"
    assert stream.response.reasoning == "I think hard"
    kinds = [kind for kind, _ in llm.stream(ASK).events()]
    assert kinds[0] == "reasoning" and kinds[-1] == "text"


def test_a_reply_cut_off_while_thinking_has_reasoning_and_no_text() -> None:
    cut = MockReply(
        chunks=("<think>Still going",),
        outcome=RunOutcome(exit_code=0, hit_token_limit=True),
    )
    llm = LocalLLM(transport=MockTransport(lambda r: cut), chat_template=str(QWEN3))
    response = llm.generate(ASK)
    assert (response.reasoning, response.text, response.finish_reason) == (
        "Still going",
        "",
        "length",
    )


def test_a_json_schema_applies_after_the_thinking() -> None:
    llm = thinking_llm('<think>ok</think>{"a": 1}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = llm.build_request(
        ASK, response_format={"type": "json_schema", "json_schema": {"schema": schema}}
    )
    assert request.json_schema is None and request.grammar is not None
    assert "</think>" in request.grammar
    response = llm.generate(ASK)
    assert json.loads(response.text) == {"a": 1} and response.reasoning == "ok"


def test_a_template_that_does_not_think_leaves_think_tags_in_the_text() -> None:
    transport = MockTransport(lambda request: reply("<think>x</think>y"), runs_llama_cpp=False)
    llm = LocalLLM(transport=transport, prompt_format="flat")
    response = llm.generate(ASK)
    assert (response.text, response.reasoning) == ("<think>x</think>y", None)


# ---------- each family's own format, through the template that speaks it ----------

FAMILY_REPLIES = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call>",
        "Let me check.",
    ),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": (
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        "",
    ),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": (
        "mistral_nemo",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]',
        "",
    ),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": (
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
        "",
    ),
    "google-gemma-2-2b-it.jinja": ("generic", ENVELOPE, ""),
}


@pytest.mark.parametrize("template", sorted(FAMILY_REPLIES))
@pytest.mark.parametrize("streamed", [False, True])
def test_each_family_reply_becomes_the_same_call(template: str, streamed: bool) -> None:
    family, raw, text = FAMILY_REPLIES[template]
    pieces = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    transport = MockTransport(lambda request: reply(*pieces))
    llm = LocalLLM(transport=transport, chat_template=str(TEMPLATES / template), tools=[WEATHER])
    if streamed:
        stream = llm.stream(ASK)
        assert "".join(stream) == text
        response = stream.response
    else:
        response = llm.generate(ASK)
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert (response.text, response.finish_reason) == (text, "tool_calls")
    assert response.api_metrics is not None and response.api_metrics["tool_family"] == family
    prompt = transport.requests[-1].prompt
    # native templates print the tool list themselves; the generic one gets a system text
    assert "get_weather" in prompt


@pytest.mark.parametrize(
    ("template", "raw"),
    [
        ("Qwen-Qwen2.5-7B-Instruct.jinja", '<tool_call>\n{"name": "get_weather", "argu'),
        (
            "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            '[TOOL_CALLS][{"name": "nope", "arguments": {}}]',
        ),
        (
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
            '{"name": "get_weather", "parameters": {"city": 3}}',
        ),
    ],
)
def test_a_malformed_or_partial_call_in_any_family_is_a_typed_error(
    template: str, raw: str
) -> None:
    transport = MockTransport(lambda request: reply(raw))
    llm = LocalLLM(transport=transport, chat_template=str(TEMPLATES / template), tools=[WEATHER])
    with pytest.raises(LLMToolCallError) as caught:
        llm.generate(ASK)
    assert caught.value.raw_text == raw


# ---------- call markup never reaches the text ----------

CALLS = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    ],
    "meta-llama-Llama-3.1-8B-Instruct.jinja": [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "Paris"}}'
        "}",
    ],
    "meta-llama-Llama-3.3-70B-Instruct.jinja": [
        '{ "name" : "get_weather", "parameters": {"city": "Paris"}}'
    ],
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": [
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]'
    ],
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ['[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'],
    "google-gemma-2-2b-it.jinja": [ENVELOPE, ENVELOPE.replace('{"tool_calls"', '{ "tool_calls"')],
}
CALL_CASES = [(template, call) for template, calls in CALLS.items() for call in calls]
MARKUP = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "<|python_tag|>", '"name"')


def family_llm(template: str, raw: str, **options: Any) -> LocalLLM:
    # one character a piece: every split of every marker reaches the splitter
    transport = MockTransport(lambda request: reply(*raw))
    path = str(TEMPLATES / template)
    return LocalLLM(transport=transport, chat_template=path, tools=[WEATHER], **options)


def every_way(llm: LocalLLM) -> tuple[Any, str, list[tuple[str, Any]]]:
    """The response of generate, the text a stream yields, and the events."""
    stream = llm.stream(ASK)
    streamed = "".join(stream)
    generated = llm.generate(ASK)
    assert (stream.response.text, stream.response.tool_calls) == (
        generated.text,
        generated.tool_calls,
    )
    return generated, streamed, list(llm.stream(ASK).events())


@pytest.mark.parametrize(("template", "call"), CALL_CASES)
def test_auto_reads_a_call_written_after_text_and_keeps_the_text(template: str, call: str) -> None:
    llm = family_llm(template, f"Let me check that for you.\n\n{call}")
    response, streamed, events = every_way(llm)
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert (response.text, response.finish_reason) == ("Let me check that for you.", "tool_calls")
    assert streamed == response.text
    assert [kind for kind, _ in events] == ["text"] * (len(events) - 1) + ["tool_call"]
    assert "".join(text for kind, text in events if kind == "text") == response.text


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (f"{ENVELOPE}\nI asked for the weather.", "I asked for the weather."),
        ('{"content": "Sunny."} Anything else?', "Sunny.\nAnything else?"),
    ],
)
def test_text_after_a_generic_envelope_is_kept_as_text(raw: str, text: str) -> None:
    response, streamed, _ = every_way(family_llm("google-gemma-2-2b-it.jinja", raw))
    assert (response.text, streamed) == (text, text)
    assert len(response.tool_calls) == ("tool_calls" in raw)


@pytest.mark.parametrize(("template", "call"), CALL_CASES)
@pytest.mark.parametrize("before", ["", "Sure. ", "Sure.\n"])
def test_none_leaves_a_call_out_of_the_text_and_counts_it(
    template: str, call: str, before: str
) -> None:
    llm = family_llm(template, before + call, tool_choice="none")
    response, streamed, events = every_way(llm)
    assert (response.text, response.tool_calls, response.finish_reason) == (
        before.strip(),
        [],
        "stop",
    )
    assert response.api_metrics is not None
    assert response.api_metrics["tool_calls_dropped"] == 1
    # the stream held the markup back from its first character on
    assert streamed == response.text
    assert {kind for kind, _ in events} <= {"text"}
    assert "".join(text for _, text in events) == response.text
    assert not any(marker in streamed for marker in MARKUP)


@pytest.mark.parametrize("template", sorted(CALLS))
def test_none_drops_an_unreadable_call_with_the_rest_of_the_reply(template: str) -> None:
    broken = CALLS[template][0][:-6]  # cut inside the call
    llm = family_llm(template, f"Sure.\n{broken}", tool_choice="none")
    response, streamed, _ = every_way(llm)
    assert (response.text, streamed, response.tool_calls) == ("Sure.", "Sure.", [])
    assert response.api_metrics is not None
    assert response.api_metrics["tool_calls_dropped"] == 1


@pytest.mark.parametrize("before", ["", "Sure.\n"])
def test_none_takes_the_answer_out_of_a_generic_content_envelope(before: str) -> None:
    raw = before + '{"content": "It is \\"sunny\\".\\n21 C."}'
    llm = family_llm("google-gemma-2-2b-it.jinja", raw, tool_choice="none")
    response, streamed, _ = every_way(llm)
    assert response.text == before + 'It is "sunny".\n21 C.'
    assert streamed == response.text
    assert response.api_metrics is not None
    assert response.api_metrics["tool_calls_dropped"] == 0


def test_none_keeps_answers_that_only_look_like_json_or_markup() -> None:
    text = 'Use {"name": "x"} or <tool_box> or [TOOL_CALL]. Done.'
    for template in sorted(CALLS):
        llm = family_llm(template, text, tool_choice="none")
        response, streamed, _ = every_way(llm)
        assert (response.text, streamed) == (text, text), template


def test_none_after_thinking_leaves_the_call_out_too() -> None:
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    llm = family_llm(
        "Qwen-Qwen3-0.6B.jinja",
        f"<think>\nThey want weather.\n</think>\n\nOk. {call}",
        tool_choice="none",
    )
    response, streamed, events = every_way(llm)
    assert (response.reasoning, response.text, streamed) == ("They want weather.", "Ok.", "Ok.")
    assert [kind for kind, _ in events][-1] == "text"


# ---------- a reasoning budget ----------


def budgeted(thinking: MockReply, answer: str) -> tuple[LocalLLM, MockTransport]:
    def handler(request: GenerationRequest) -> MockReply:
        return thinking if request.prompt.endswith("assistant\n") else reply(answer)

    transport = MockTransport(handler)
    llm = LocalLLM(transport=transport, chat_template=str(QWEN3), max_tokens=50)
    return llm, transport


def test_a_budget_caps_the_thinking_then_the_answer_follows_it() -> None:
    cut = MockReply(
        chunks=("<think>I am thinking a lot",),
        outcome=RunOutcome(
            exit_code=0, prompt_tokens=20, completion_tokens=8, hit_token_limit=True
        ),
    )
    llm, transport = budgeted(cut, "Paris.")
    response = llm.generate(ASK, reasoning=8)
    thinking, answering = transport.requests
    assert thinking.max_tokens == 8 and thinking.grammar is not None
    assert thinking.grammar.startswith('root ::= "<think>')
    # the block is closed as the model would have closed it, and the rest of the tokens
    assert answering.prompt == thinking.prompt + "<think>I am thinking a lot\n</think>\n\n"
    assert answering.max_tokens == 42 and answering.grammar is None
    assert (response.reasoning, response.text) == ("I am thinking a lot", "Paris.")
    assert response.usage.prompt_tokens == 20
    assert response.usage.completion_tokens == 8 + response.usage.total_tokens - 28
    assert response.raw == "<think>I am thinking a lotParis."


def test_a_budget_streams_reasoning_then_text() -> None:
    cut = MockReply(chunks=("<think>Hmm", " ok</think>"))
    llm, _ = budgeted(cut, "Paris.")
    events = list(llm.stream(ASK, reasoning=8).events())
    assert "".join(text for kind, text in events if kind == "reasoning") == "Hmm ok"
    assert "".join(text for kind, text in events if kind == "text") == "Paris."


def test_a_budget_of_zero_turns_thinking_off() -> None:
    llm, transport = budgeted(MockReply(chunks=("x",)), "Paris.")
    llm.generate(ASK, reasoning=0)
    assert len(transport.requests) == 1
    assert transport.requests[0].prompt.endswith("<think>\n\n</think>\n\n")


def test_a_grammar_applies_after_the_thinking_with_its_rules_kept_apart() -> None:
    llm = thinking_llm("<think>hmm</think>yes")
    grammar = 'root ::= answer\nanswer ::= "yes"{1,2} | "no" # root'
    request = llm.build_request(ASK, grammar=grammar)
    assert request.grammar is not None
    lines = request.grammar.splitlines()
    assert lines[0].startswith("root ::= think") and lines[0].endswith("jazzmine-root")
    assert 'jazzmine-answer ::= "yes"{1,2} | "no" # root' in lines
    response = llm.generate(ASK, grammar=grammar)
    assert (response.reasoning, response.text) == ("hmm", "yes")


def test_a_small_integer_range_is_listed_in_the_grammar() -> None:
    timer = {
        "type": "function",
        "function": {
            "name": "set_timer",
            "parameters": {
                "type": "object",
                "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 3}},
                "required": ["minutes"],
            },
        },
    }
    llm, _ = scripted(ENVELOPE)
    request = llm.build_request(ASK, tools=[timer], tool_choice="required")
    assert request.grammar is not None
    assert '"1" | "2" | "3"' in request.grammar
