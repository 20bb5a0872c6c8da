"""llama.cpp's hand-written formats reshape the messages (or the prompt) before the
template sees them; small templates carrying each format's source marker show what
reaches the template. (The sdist's real templates are compared against llama-server in
test_sdist_render.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jazzmine.local.template.render import ChatTemplate, render
from jazzmine.local.types import MessagePart as M

# prints each message the template gets, as JSON
DUMP = "{% for m in messages %}{{ m | tojson }}\n{% endfor %}"


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


WEATHER = _call("call1", "get_weather", {"city": "Paris"})
CLOCK = _call("call2", "clock", {})
CALLED = [
    M("user", "Weather and time?"),
    M("assistant", "Let me check.", tool_calls=[WEATHER, CLOCK], reasoning_content="Two tools."),
    M("tool", '{"sky": "clear", "temp": 21.5}', tool_call_id="call1"),
    M("tool", "12:00", tool_call_id="call2"),
    M("assistant", "Clear, and noon."),
    M("user", "Thanks"),
]


def _seen(marker: str, messages: list[M], **options: Any) -> list[dict[str, Any]]:
    """The messages as a template whose source holds ``marker`` gets them."""
    source = "{#- " + marker + " -#}" + DUMP
    prompt = render(ChatTemplate(source, "", ""), messages, **options)
    return [json.loads(line) for line in prompt.splitlines()]


def test_older_gemma_4_templates_get_tool_results_inside_the_calling_turn() -> None:
    """convert_tool_responses_gemma4: the calling turn, its results (JSON parsed, named
    after the call at the same place) and the answer after them are one message; the
    calling turn's own text is not kept."""
    seen = _seen("'<|tool_call>call:'", CALLED)
    calls = seen[1].pop("tool_calls")
    assert [call["id"] for call in calls] == ["call1", "call2"]
    assert seen == [
        {"role": "user", "content": "Weather and time?"},
        {
            "role": "assistant",
            "tool_responses": [
                {"name": "get_weather", "response": {"sky": "clear", "temp": 21.5}},
                {"name": "clock", "response": "12:00"},
            ],
            "content": "Clear, and noon.",
            "reasoning_content": "Two tools.",
        },
        {"role": "user", "content": "Thanks"},
    ]


def test_gemma_4_results_beyond_the_calls_are_named_by_their_id() -> None:
    messages = [
        M("user", "Weather?"),
        M("assistant", "", tool_calls=[WEATHER]),
        M("tool", "sunny", tool_call_id="call1"),
        M("tool", "NaN", tool_call_id="call9"),
    ]
    seen = _seen("'<|tool_call>call:'", messages)
    assert seen[1]["tool_responses"] == [
        {"name": "get_weather", "response": "sunny"},
        {"name": "call9", "response": "NaN"},  # not JSON to llama.cpp either
    ]
    assert "content" not in seen[1]


def test_a_gemma_4_tool_result_nested_past_the_decoder_stays_text() -> None:
    """A tool's result is outside text (a web page, a file): JSON nested deeper than
    Python's decoder goes is handed to the template as the text, not a RecursionError."""
    deep = "[" * 100_000
    messages = [M("user", "Weather?"), M("assistant", "", tool_calls=[WEATHER])]
    messages.append(M("tool", deep, tool_call_id="call1"))
    prompt = render(ChatTemplate("{#- '<|tool_call>call:' -#}" + DUMP, "", ""), messages)
    assert deep in prompt


def test_the_current_gemma_4_template_gets_the_messages_as_they_are() -> None:
    seen = _seen("'<|tool_call>call:'\n{#- OpenAI Chat Completions:", CALLED)
    assert [m["role"] for m in seen] == [m.role for m in CALLED]


def test_a_gemma_4_prompt_ending_on_a_closed_turn_opens_the_models_turn() -> None:
    each = "{% for m in messages %}{{ m.content }}<turn|>\n{% endfor %}"
    source = "{#- '<|tool_call>call:' -#}" + each
    template = ChatTemplate(source, "", "")
    assert render(template, [M("user", "Hi")]) == "Hi<turn|>\n<|turn>model\n"
    assert render(template, [M("user", "Hi")], add_generation_prompt=False) == "Hi<turn|>\n"


@pytest.mark.parametrize("marker", ["<|tool_list_start|><|tool_list_end|>", "List of tools: ["])
def test_lfm2_templates_read_reasoning_as_thinking(marker: str) -> None:
    seen = _seen(marker, CALLED)
    assert seen[1]["thinking"] == seen[1]["reasoning_content"] == "Two tools."
    assert seen[1]["content"] == "Let me check."
    assert "thinking" not in seen[4]


def test_gpt_oss_reads_reasoning_as_thinking_and_drops_the_text_beside_calls() -> None:
    answer = M("assistant", "Noon.", reasoning_content="Easy.")
    seen = _seen("<|channel|>", [*CALLED[:4], answer, M("user", "Thanks")])
    assert seen[1]["thinking"] == "Two tools." and "content" not in seen[1]
    assert seen[4]["thinking"] == "Easy." and seen[4]["content"] == "Noon."


def test_gpt_oss_without_a_generation_prompt_ends_its_last_turn_with_end() -> None:
    source = "{#- <|channel|> -#}{% for m in messages %}{{ m.content }}<|return|>{% endfor %}"
    template = ChatTemplate(source, "", "")
    messages = [M("user", "a"), M("assistant", "b"), M("user", "c")]
    assert render(template, messages) == "a<|return|>b<|return|>c<|return|>"
    ended = render(template, messages, add_generation_prompt=False)
    assert ended == "a<|return|>b<|return|>c<|end|>"


MINISTRAL_3 = "[SYSTEM_PROMPT][TOOL_CALLS][ARGS]"


def test_ministral_3_reads_system_and_assistant_content_as_blocks() -> None:
    messages = [M("system", "Be brief."), *CALLED]
    seen = _seen(MINISTRAL_3, messages)
    assert seen[0]["content"] == [{"type": "text", "text": "Be brief."}]
    assert seen[1]["content"] == "Weather and time?"
    assert seen[2]["content"] == [
        {"type": "thinking", "thinking": "Two tools."},
        {"type": "text", "text": "Let me check."},
    ]
    assert "reasoning_content" not in seen[2]
    # Mistral Small 3.2 has call ids: not this format
    assert _seen(MINISTRAL_3 + "[CALL_ID]", messages)[0]["content"] == "Be brief."


def test_deepseek_v4_gets_tool_results_in_the_order_of_the_calls() -> None:
    out_of_order = [CALLED[0], CALLED[1], CALLED[3], CALLED[2], *CALLED[4:]]
    v4 = _seen("dsml_token DSML tool_calls", out_of_order)
    assert [m.get("tool_call_id") for m in v4[2:4]] == ["call1", "call2"]
    v3_2 = _seen("dsml_token DSML function_calls", out_of_order)
    assert [m.get("tool_call_id") for m in v3_2[2:4]] == ["call2", "call1"]


def test_an_earlier_handler_in_llama_cpps_order_wins() -> None:
    # GPT-OSS is tried before LFM2.5; Kimi K2 (which rewrites nothing) before both
    assert "thinking" in _seen("<|channel|> List of tools: [", CALLED)[1]
    kimi = "<|tool_calls_section_begin|><|tool_call_begin|> List of tools: ["
    assert "thinking" not in _seen(kimi, CALLED)[1]


# --- a prefilled assistant turn: each hand-written format continues it in its words ---

QUESTION = M("user", "Weather?")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _continued(marker: str, prefill: M, body: str = CHATML) -> str:
    """What follows the rendered question when ``prefill`` is continued."""
    template = ChatTemplate("{#- " + marker + " -#}" + body, "", "")
    prompt = render(template, [QUESTION, prefill])
    question = render(template, [QUESTION], add_generation_prompt=False)
    assert prompt.startswith(question)
    return prompt[len(question) :]


TEXT = M("assistant", "It is")
BOTH = M("assistant", "It is", reasoning_content="Look it up.")
REASONING_ONLY = M("assistant", "", reasoning_content="Look it")


@pytest.mark.parametrize(
    ("marker", "text", "both", "reasoning_only"),
    [
        (
            "<|tool_list_start|><|tool_list_end|>",  # LFM2
            "<|im_start|>assistant\n<think></think>It is",
            "<|im_start|>assistant\n<think>Look it up.</think>It is",
            "<|im_start|>assistant\n<think>Look it",
        ),
        (
            "<|channel|>",  # GPT-OSS
            "<|start|>assistant<|channel|>analysis<|message|>"
            "<|end|><|start|>assistant<|channel|>final<|message|>It is",
            "<|start|>assistant<|channel|>analysis<|message|>Look it up."
            "<|end|><|start|>assistant<|channel|>final<|message|>It is",
            "<|start|>assistant<|channel|>analysis<|message|>Look it",
        ),
        (
            "dsml_token DSML tool_calls",  # DeepSeek V4: no reasoning, a closed block
            "<｜Assistant｜></think>It is",
            "<｜Assistant｜><think>Look it up.</think>It is",
            "<｜Assistant｜><think>Look it",
        ),
        (
            "dsml_token DSML function_calls",  # DeepSeek V3.2
            "<｜Assistant｜><think></think>It is",
            "<｜Assistant｜><think>Look it up.</think>It is",
            "<｜Assistant｜><think>Look it",
        ),
        (
            "<tool_call><function=<parameter=<think>",  # Qwen3-Coder's calls, thinking
            "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is",
            "<|im_start|>assistant\n<think>\nLook it up.\n</think>\n\nIt is",
            "<|im_start|>assistant\n<think>\nLook it",
        ),
        (
            "<tool_call><function=<parameter=",  # Qwen3-Coder itself: no thinking
            "<|im_start|>assistant\nIt is",
            "<|im_start|>assistant\nIt is",
            "<|im_start|>assistant\n",
        ),
        (
            "[SYSTEM_PROMPT][TOOL_CALLS][ARGS]",  # Ministral 3
            "[THINK][/THINK]It is",
            "[THINK]Look it up.[/THINK]It is",
            "[THINK]Look it",
        ),
    ],
    ids=[
        "lfm2",
        "gpt-oss",
        "deepseek-v4",
        "deepseek-v3.2",
        "qwen3-coder-think",
        "qwen3-coder",
        "ministral-3",
    ],
)
def test_a_prefill_continues_in_the_formats_own_words(
    marker: str, text: str, both: str, reasoning_only: str
) -> None:
    assert _continued(marker, TEXT) == text
    assert _continued(marker, BOTH) == both
    assert _continued(marker, REASONING_ONLY) == reasoning_only


def test_gemma_4_continues_a_closed_turn_by_opening_the_models() -> None:
    closed = "{% for m in messages %}{{ m.content }}<turn|>\n{% endfor %}"
    marker = "'<|tool_call>call:'"
    assert _continued(marker, BOTH, closed) == (
        "<|turn>model\n<|channel>thought\nLook it up.<channel|>It is"
    )
    open_turn = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert _continued(marker, REASONING_ONLY, open_turn) == "<|channel>thought\nLook it"


def test_an_analysed_template_without_reasoning_continues_after_its_generation_prompt() -> None:
    # no reasoning markers: the reasoning of a message that only reasons is not written
    assert _continued("", TEXT) == "<|im_start|>assistant\nIt is"
    assert _continued("", REASONING_ONLY) == "<|im_start|>assistant\n"
    # an empty trailing assistant message is dropped, and nothing continues
    assert _continued("", M("assistant", "")) == ""


def test_stepfuns_trim_spares_the_prefilled_message() -> None:
    marker = "You have access to the following functions in JSONSchema format"
    spaced = [M("user", " Weather? "), M("assistant", " It is ")]
    prompt = render(ChatTemplate("{#- " + marker + " -#}" + CHATML, "", ""), spaced)
    assert prompt == "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n It is "


def test_stepfuns_trim_takes_reasoning_too() -> None:
    marker = "You have access to the following functions in JSONSchema format"
    turns = [
        M("user", "Hi"),
        M("assistant", "Hello", reasoning_content="  greet \n"),
        M("assistant", "Again", reasoning_content=" \n "),
        M("user", "Bye"),
    ]
    seen = _seen(marker, turns)
    assert seen[1]["reasoning_content"] == "greet"
    assert "reasoning_content" not in seen[2]  # blank: written only when not empty


def test_a_developer_message_is_a_system_message_except_for_gpt_oss() -> None:
    turns = [M("developer", "Be brief."), M("user", "Hi")]
    assert _seen("", turns)[0]["role"] == "system"
    assert _seen("<|channel|>", turns)[0]["role"] == "developer"
