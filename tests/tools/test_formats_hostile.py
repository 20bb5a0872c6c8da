"""Learnt formats against a hostile caller: templates that spin while the format is
learnt, replies built to make the reader backtrack, inputs that must fail typed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_formats import (
    NUMBERED_CALLS,
    NUMBERED_REPLY,
    PYTHON_CALLS,
    TOOLS,
    XML_CALLS,
    XML_REPLY,
    template,
)

from jazzmine.local import LocalLLM
from jazzmine.local.errors import LLMInvalidRequestError, LLMTimeoutError, LLMToolCallError
from jazzmine.local.mock import MockReply, MockTransport
from jazzmine.local.template.engine.source import ChatTemplate
from jazzmine.local.template.render import render
from jazzmine.local.tools.formats import probe
from jazzmine.local.tools.plan import plan_tools
from jazzmine.local.types import MessagePart

# work the template does on every call turn of the format probes (about a second,
# under the step budget of a rendering with no deadline), and on no other rendering
_SPIN = (
    "{%- if m.tool_calls and m.tool_calls[-1].function.name in ['probe_alpha', 'probe_beta'] %}"
    "{% for i in range(1000) %}{% for j in range(600) %}{% set x = i ~ j %}"
    "{% endfor %}{% endfor %}{% endif %}"
)


def _spinning() -> ChatTemplate:
    loop = "{%- for m in messages %}"
    return ChatTemplate(template(XML_CALLS).source.replace(loop, loop + _SPIN), "", "<|im_end|>")


def test_learning_the_call_format_stays_inside_the_call_s_deadline(tmp_path: Path) -> None:
    spinning = _spinning()
    started = time.monotonic()
    one_call = probe.calls_turn(probe.call(probe.NAME_ONE, {"a": "b"}, probe.ID_ONE))
    render(spinning, [MessagePart("user", "q"), one_call], prefill_final=False)
    one_render = time.monotonic() - started  # what one spinning probe costs here

    path = tmp_path / "spin.jinja"
    path.write_text(spinning.source)
    llm = LocalLLM(
        transport=MockTransport(lambda request: MockReply(["hi"])),
        chat_template=str(path),
        tools=TOOLS,
        timeout=0.2,
    )
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        llm.generate([MessagePart("user", "Weather?")])
    # the probes stop at the deadline; unbounded, they render several spinning turns
    assert time.monotonic() - started < 0.2 + one_render


@pytest.mark.parametrize("key", ["my key", "a/b", "x:y", "日本", "a", "ab"])
def test_a_parameter_named_outside_word_characters_reads_back(key: str) -> None:
    """The forced grammar writes any property name the schema has; the reader takes
    the same names (else every forced call to such a tool fails)."""
    properties = {key: {"type": "string"}, "a" if key == "ab" else "z": {"type": "string"}}
    tool = {
        "type": "function",
        "function": {"name": "odd", "parameters": {"type": "object", "properties": properties}},
    }
    xml = template(XML_CALLS)
    made = plan_tools(xml.source, [tool], "required", template=xml)
    assert made is not None
    arguments = dict.fromkeys(properties, "v")
    turn = probe.calls_turn(probe.call("odd", arguments, probe.ID_ONE))
    written = probe.reply(xml, turn)
    assert written is not None and f"<parameter={key}>" in written
    (call,) = made.parse(written).tool_calls
    assert call.arguments == arguments


def test_nested_values_the_template_prints_as_python_read_back() -> None:
    """Seed-OSS and MiniCPM 5 print a parameter's value with ``{{ v }}``: an object or
    a list comes out as Python (single quotes, True/None), which a model trained on
    them writes; read as llama.cpp reads it, as the JSON it stands for."""
    printed = XML_CALLS.replace("{{ v if v is string else v|tojson }}", "{{ v }}")
    xml = template(printed)
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "flags": {"type": "array"},
        },
    }
    tool = {"type": "function", "function": {"name": "book", "parameters": schema}}
    made = plan_tools(xml.source, [tool], "required", template=xml)
    assert made is not None and made.family.name == "derived"
    arguments = {
        "when": {"from": "2026-01-01", "nights": 2, "note": 'it\'s "fine"'},
        "tags": ["a", "b c"],
        "flags": [True, None, 1.5],
    }
    turn = probe.calls_turn(probe.call("book", arguments, probe.ID_ONE))
    written = probe.reply(xml, turn)
    assert written is not None and "{'from': '2026-01-01'" in written
    (call,) = made.parse(written).tool_calls
    assert call.arguments == arguments


_DEEP = "[" * 100_000
NESTED_REPLIES = {
    "hermes": '<tool_call>{"name": "get_weather", "arguments": ' + _DEEP,
    "hermes string": '<tool_call>{"name": "get_weather", "arguments": "' + _DEEP + '"}</tool_call>',
    "generic": '{"tool_calls": ' + _DEEP,
    "numbered": NUMBERED_REPLY.replace('{"city": "New York", "days": 3}', _DEEP),
    "xml value": XML_REPLY.replace("\n3\n", f"\n{_DEEP}\n"),
}


@pytest.mark.parametrize("case", sorted(NESTED_REPLIES))
def test_a_reply_nested_past_the_decoder_is_a_tool_call_error(case: str) -> None:
    """A model looping on "[" writes JSON deeper than Python's decoder goes: the call
    fails as an unreadable call, never with a RecursionError."""
    reply = NESTED_REPLIES[case]
    if case.startswith("hermes"):
        made = plan_tools(None, TOOLS, "required", family="hermes")
    elif case == "generic":
        made = plan_tools(None, TOOLS, "required")
    else:
        calls = NUMBERED_CALLS if case == "numbered" else XML_CALLS
        made = plan_tools(template(calls).source, TOOLS, "required", template=template(calls))
    assert made is not None
    for complete in (True, False):
        with pytest.raises(LLMToolCallError):
            made.parse(reply, complete=complete)


def test_a_python_list_in_a_python_call_reads_back() -> None:
    """LFM2.5 prints a list argument with ``{{ v }}`` inside its Python-style call:
    ``tags=['a', 'b c']``, which a model trained on it writes."""
    printed = PYTHON_CALLS.replace("{{ v|tojson }}", "{{ v }}")
    python = template(printed)
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "tags": {"type": "array"},
            "more": {"type": "object"},
            "ok": {"type": "boolean"},
        },
    }
    tool = {"type": "function", "function": {"name": "book", "parameters": schema}}
    made = plan_tools(python.source, [tool], "auto", template=python)
    assert made is not None and made.family.name == "derived"
    arguments = {"city": "Paris", "tags": ["a", "b, c)", []], "more": {"k": [1]}, "ok": False}
    turn = probe.calls_turn(probe.call("book", arguments, probe.ID_ONE))
    written = probe.reply(python, turn)
    assert written is not None and "tags=['a', 'b, c)', []]" in written
    (call,) = made.parse(written).tool_calls
    assert call.arguments == arguments
    with pytest.raises(LLMToolCallError):
        made.parse(written.replace("[]]", "[]"))


@pytest.mark.parametrize(
    "arguments", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, "[" * 960 + "]" * 960]
)
def test_call_arguments_nested_past_the_decoder_in_the_history_are_a_request_error(
    arguments: str,
) -> None:
    """The arguments of a past call come from the caller's history: nested deeper than
    Python's decoder goes, they are an invalid request, not a bare RecursionError."""
    qwen3 = Path(__file__).parent.parent / "fixtures" / "templates" / "Qwen-Qwen3-0.6B.jinja"
    call = {"id": "call12345", "type": "function"}
    call["function"] = {"name": "get_weather", "arguments": arguments}
    history = [MessagePart("user", "Weather?"), MessagePart("assistant", "", tool_calls=[call])]
    history.append(MessagePart("tool", "sunny", tool_call_id="call12345"))
    llm = LocalLLM(
        transport=MockTransport(lambda request: MockReply(["hi"])),
        chat_template=str(qwen3),
        tools=TOOLS,
    )
    with pytest.raises(LLMInvalidRequestError):
        llm.generate(history)


# Every turn ends "<|close|>message<|sep|>" before the end-of-message stop (Kimi K3)
_CLOSED_TURNS = """{%- for m in messages %}<|open|>{{ m.role }}<|sep|>
{%- if m.tool_calls %}<|open|>tools<|sep|>{% for tc in m.tool_calls %}<|invoke|>
{{- tc.function.name }}<|args|>{{ tc.function.arguments | tojson }}<|close|>call<|sep|>
{%- endfor %}<|close|>tools<|sep|>{% else %}{{ m.content }}{% endif -%}
<|close|>message<|sep|><|end_of_msg|>{% endfor %}
{%- if add_generation_prompt %}<|open|>assistant<|sep|>{% endif %}"""


@pytest.mark.parametrize("step", [0, 1])
def test_what_ends_every_turn_after_a_call_is_no_text(step: int, tmp_path: Path) -> None:
    """A template whose turns all close with markup before the stop marker: after a
    call the model writes that closing too, and it is not the reply's text."""
    path = tmp_path / "closed.jinja"
    path.write_text(_CLOSED_TURNS)
    turn = probe.calls_turn(probe.call("get_weather", {"city": "Paris"}, probe.ID_ONE))
    written = probe.reply(ChatTemplate(_CLOSED_TURNS, "", ""), turn)
    assert written is not None and written.endswith("<|close|>message<|sep|>")
    pieces = [written[i : i + step] for i in range(0, len(written), step)] if step else [written]
    llm = LocalLLM(
        transport=MockTransport(lambda request: MockReply(pieces)),
        chat_template=str(path),
        tools=TOOLS,
    )
    stream = llm.stream([MessagePart("user", "Weather?")])
    shown = "".join(str(value) for kind, value in stream.events() if kind == "text")
    assert [call.arguments for call in stream.response.tool_calls] == [{"city": "Paris"}]
    assert stream.response.text == shown == ""
