"""Learnt formats against a hostile caller: templates that spin while the format is
learnt, replies built to make the reader backtrack, inputs that must fail typed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_formats import TOOLS, XML_CALLS, template

from jazzmine.local import LocalLLM
from jazzmine.local.errors import LLMTimeoutError
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
