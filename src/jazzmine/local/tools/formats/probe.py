"""The probe conversations a template is rendered on to learn its call format, and
the assistant turn a template writes after its generation prompt."""

from __future__ import annotations

import json
from typing import Any

from ...errors import LLMError
from ...template.engine.source import ChatTemplate
from ...template.markers import turn_after_prompt
from ...template.render import render
from ...types import MessagePart

NAME_ONE, NAME_TWO = "probe_alpha", "probe_beta"
ID_ONE, ID_TWO = "probeid01", "probeid02"  # nine alphanumerics: Mistral's rule
KEY_ONE, KEY_TWO, KEY_NUM = "arg_one", "arg_two", "arg_num"
VALUE_ONE, VALUE_TWO, NUMBER = "VAL_ONE", "VAL_TWO", 42
TEXT = "PROBE_TEXT"
# the arguments parameters are learnt from: two strings, a number
PARAMS_PROBES = ({KEY_ONE: VALUE_ONE, KEY_TWO: VALUE_TWO}, {KEY_NUM: NUMBER})


def _tool(name: str) -> dict[str, Any]:
    properties = {
        KEY_ONE: {"type": "string"},
        KEY_TWO: {"type": "string"},
        KEY_NUM: {"type": "integer"},
    }
    parameters = {"type": "object", "properties": properties, "required": []}
    function = {"name": name, "description": "A probe", "parameters": parameters}
    return {"type": "function", "function": function}


PROBE_TOOLS = [_tool(NAME_ONE), _tool(NAME_TWO)]
PROBE_SCHEMAS = {NAME_ONE: PROBE_TOOLS[0]["function"]["parameters"]}
PROBE_SCHEMAS[NAME_TWO] = PROBE_TOOLS[1]["function"]["parameters"]


def call(name: str, arguments: dict[str, Any], ident: str) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": ident, "type": "function", "function": function}


def reply(template: ChatTemplate, turn: MessagePart, deadline: float | None = None) -> str | None:
    """What ``turn`` adds after the generation prompt, up to the end of the turn; None
    when the template refuses the conversation or writes the turn elsewhere. Past
    ``deadline``, DeadlineExceeded."""
    history = [MessagePart("user", "Probe question")]
    try:
        prompt = render(
            template, history, add_generation_prompt=True, tools=PROBE_TOOLS, deadline=deadline
        )
        full = render(
            template,
            [*history, turn],
            add_generation_prompt=False,
            prefill_final=False,
            tools=PROBE_TOOLS,
            deadline=deadline,
        )
    except LLMError:
        return None
    return turn_after_prompt(prompt, full, template)


def calls_turn(*calls: dict[str, Any]) -> MessagePart:
    return MessagePart("assistant", "", tool_calls=list(calls))


def text_turn() -> MessagePart:
    return MessagePart("assistant", TEXT)
