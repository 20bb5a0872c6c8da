"""Reading tool calls out of a reply, per family, whole or as a stream.

``parse_reply`` splits a finished reply into its text and its calls; every call is
checked (a known function, arguments that are a JSON object valid against the tool's
schema) and gets an id. A reply that started a call which cannot be used raises
``LLMToolCallError`` with the whole reply in it. Call markup never reaches the text:
with tool_choice "none" a call the model wrote anyway is left out of the text and
only counted (``ParsedReply.dropped``), since the caller asked for none.

The streaming form is ``stream.ToolStreamSplitter``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LLMToolCallError
from .families import PYTHON_TAG, Family, call_openings
from .formats.read import split_calls
from .json_read import (
    RawCall,
    UnreadableCall,
    call_of_object,
    decode_partial_string,
    is_call_object,
    json_at,
    one_json,
)
from .spec import Choice, Tool, ToolCall, call_id
from .validate import validate

_MISTRAL_HEAD = re.compile(r"\s*([A-Za-z0-9_-]+)(?:\[CALL_ID\]([^\[]*))?\[ARGS\]")
_BUILTIN = re.compile(r"\s*([A-Za-z0-9_-]+)\.call\((.*)\)\s*", re.S)
_BUILTIN_ARG = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*")\s*(?:,|$)', re.S)
ENVELOPE_CONTENT = re.compile(r'\s*\{\s*"content"\s*:\s*"')
_STARTED_JSON_CALL = re.compile(r'\s*\{\s*"(?:name|type|function)"')
_TOOL_CALLS_OPENING = re.compile(r'\s*\{\s*"tool_calls"')


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into its text (markup removed) and its tool calls."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    # tool_choice "none": calls the model wrote anyway, left out of the text
    dropped: int = 0


def parse_reply(
    raw: str,
    family: Family,
    tools: Sequence[Tool],
    choice: Choice | None = None,
    *,
    complete: bool = True,
) -> ParsedReply:
    """Split ``raw`` into text and checked calls. ``complete=False`` says the reply was
    cut off (max_tokens): a call still open is then reported as cut off."""
    choice = choice or Choice("auto")
    if not tools:
        return ParsedReply(raw)
    if choice.mode == "none":
        return _without_calls(raw, family, tools, complete)
    try:
        text, raw_calls = _split(raw, family, tools, complete)
    except UnreadableCall as bad:
        cut = "" if complete else " (the reply was cut off by max_tokens)"
        raise LLMToolCallError(
            f"the model started a tool call that cannot be parsed{cut}: {bad}", raw_text=raw
        ) from None
    calls = tuple(
        _checked(raw, family, tools, choice, index, c) for index, c in enumerate(raw_calls)
    )
    if choice.forces_call and not calls:
        raise LLMToolCallError(
            "tool_choice requires a tool call but the reply has none", raw_text=raw
        )
    return ParsedReply(text, calls)


def _checked(
    raw: str, family: Family, tools: Sequence[Tool], choice: Choice, index: int, call: RawCall
) -> ToolCall:
    def fail(message: str) -> LLMToolCallError:
        return LLMToolCallError(f"tool call {index}: {message}", raw_text=raw)

    if not isinstance(call.name, str):
        raise fail(f"the function name is not a string: {call.name!r}")
    tool = next((t for t in tools if t.name == call.name), None)
    if tool is None:
        raise fail(f"the model called {call.name!r}, which is not one of the tools")
    if choice.mode == "named" and call.name != choice.name:
        raise fail(f"tool_choice names {choice.name!r} but the model called {call.name!r}")
    arguments = call.arguments
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        # some models (and OpenAI's own shape) give the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise fail(f"the arguments of {call.name!r} are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise fail(f"the arguments of {call.name!r} are not a JSON object: {arguments!r}")
    errors = validate(arguments, tool.schema)
    if errors:
        raise fail(f"the arguments of {call.name!r} do not match its schema: {'; '.join(errors)}")
    model_id = call.model_id
    if isinstance(model_id, (str, int)) and not isinstance(model_id, bool) and str(model_id):
        ident = str(model_id)
        if family.id_style == "mistral" and not re.fullmatch(r"[A-Za-z0-9]{9}", ident):
            ident = call_id(raw, index, family.id_style)
    else:
        ident = call_id(raw, index, family.id_style)
    return ToolCall(ident, call.name, arguments)


def _without_calls(raw: str, family: Family, tools: Sequence[Tool], complete: bool) -> ParsedReply:
    """tool_choice "none": the reply's text with any call the model wrote anyway left
    out (never checked, never returned); one that cannot be read takes the rest of the
    reply with it, as markup that was never closed would."""
    names = [tool.name for tool in tools]
    try:
        text, calls = _split(raw, family, tools, complete)
    except UnreadableCall:
        # llama3 and generic replies that open with a call are read whole
        whole = {"llama3": ("{", PYTHON_TAG), "generic": ("{",)}.get(family.name, ())
        start = 0 if whole and raw.lstrip().startswith(whole) else -1
        if start < 0:
            start = max(call_openings(family, names).find(raw), 0)
        return ParsedReply(raw[:start].rstrip(), (), 1)
    return ParsedReply(text, (), len(calls))


def _split(
    raw: str, family: Family, tools: Sequence[Tool], complete: bool
) -> tuple[str, list[RawCall]]:
    names = [tool.name for tool in tools]
    if family.format is not None:
        schemas = {tool.name: tool.schema for tool in tools}
        before, tail, calls = split_calls(raw, family.format, schemas)
        return (_join(before, tail), calls) if calls else (raw, [])
    if family.name == "llama3":
        return _split_llama3(raw, family, names)
    if family.name == "generic":
        return _split_generic(raw, family, names)
    return _split_marked(raw, family)


def _join(before: str, tail: list[str]) -> str:
    """The text of a reply with calls: what came before them (without the whitespace
    that led up to the call), then any text the model wrote between or after them."""
    rest = "\n".join(part.strip() for part in tail if part.strip())
    before = before.rstrip()
    return f"{before}\n{rest}" if before and rest else before or rest


def _split_marked(raw: str, family: Family) -> tuple[str, list[RawCall]]:
    """Families whose calls start with a trigger: hermes, mistral_nemo, mistral."""
    trigger = family.trigger
    start = raw.find(trigger)
    if start < 0:
        return raw, []
    before, tail = raw[:start], []
    calls: list[RawCall] = []
    pos = start
    while pos < len(raw):
        pos += len(trigger)
        if family.name == "hermes":
            pos = _hermes_call(raw, pos, calls)
        elif family.name == "mistral" and _MISTRAL_HEAD.match(raw, pos):
            pos = _mistral_call(raw, pos, calls)
        else:  # mistral_nemo, and Mistral's older JSON list after the same marker
            pos = _json_list_calls(raw, pos, calls)
        following = raw.find(trigger, pos)
        end = len(raw) if following < 0 else following
        tail.append(raw[pos:end])
        pos = end
    return _join(before, tail), calls


def _hermes_call(raw: str, pos: int, calls: list[RawCall]) -> int:
    close = raw.find("</tool_call>", pos)
    body = raw[pos:] if close < 0 else raw[pos:close]
    try:
        value, _ = one_json(body)
    except UnreadableCall:
        if close < 0:
            raise UnreadableCall(
                "<tool_call> is never closed and what follows is not one JSON object"
            ) from None
        raise
    calls.append(call_of_object(value))
    return len(raw) if close < 0 else close + len("</tool_call>")


def _mistral_call(raw: str, pos: int, calls: list[RawCall]) -> int:
    head = _MISTRAL_HEAD.match(raw, pos)
    assert head is not None
    value, end = json_at(raw, head.end())
    calls.append(RawCall(head.group(1), value, head.group(2)))
    return end


def _json_list_calls(raw: str, pos: int, calls: list[RawCall]) -> int:
    value, end = json_at(raw, pos)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UnreadableCall("the tool call list is empty")
    calls.extend(call_of_object(item) for item in items)
    return end


def _split_llama3(raw: str, family: Family, names: Sequence[str]) -> tuple[str, list[RawCall]]:
    """Llama 3.x: a call is a JSON object (after an optional python tag); several may be
    separated by ";". A reply that opens with JSON that is not a call is text. After
    text, the python tag or an object that opens with a tool's name starts a call."""
    body = raw.lstrip()
    begin = 0
    if body.startswith(("{", PYTHON_TAG)):
        found = _llama3_calls(body, sure=False)
        if found is not None:
            return found
        begin = len(raw) - len(body) + 1  # an answer that opens with JSON
    start = call_openings(family, names).find(raw, begin)
    if start < 0:
        return raw, []
    found = _llama3_calls(raw[start:], sure=True)
    assert found is not None  # sure=True raises instead
    rest, calls = found
    return _join(raw[:start], [rest]), calls


def _llama3_calls(body: str, *, sure: bool) -> tuple[str, list[RawCall]] | None:
    """The calls ``body`` opens with and the text after them; None when it opens with
    JSON that is not a call (unless ``sure``: then that raises)."""
    tagged = body.startswith(PYTHON_TAG)
    if tagged:
        body = body[len(PYTHON_TAG) :].lstrip()
        builtin = _BUILTIN.fullmatch(body)
        if builtin and not body.startswith("{"):
            return "", [RawCall(builtin.group(1), _builtin_arguments(builtin.group(2)))]
    sure = sure or tagged
    calls: list[RawCall] = []
    pos = 0
    while True:
        try:
            value, end = json_at(body, pos)
        except UnreadableCall:
            if sure or calls or _STARTED_JSON_CALL.match(body, pos):
                raise
            return None  # not JSON after all: an answer that starts with "{"
        if not is_call_object(value):
            if sure or calls:
                raise UnreadableCall(f"not a function call object: {body[pos:end]!r}")
            return None
        calls.append(call_of_object(value))
        rest = body[end:].lstrip()
        if not rest.startswith((";", ",")) or not rest[1:].lstrip().startswith("{"):
            return _join("", [rest]), calls
        pos = len(body) - len(rest[1:].lstrip())


def _builtin_arguments(text: str) -> dict[str, Any]:
    """``name.call(query="...")``: Llama 3.1's built-in tool syntax."""
    arguments: dict[str, Any] = {}
    pos = 0
    while text[pos:].strip():
        match = _BUILTIN_ARG.match(text, pos)
        if match is None:
            raise UnreadableCall(f"cannot read the built-in tool arguments {text!r}")
        arguments[match.group(1)] = json.loads(match.group(2))
        pos = match.end()
    return arguments


def _split_generic(raw: str, family: Family, names: Sequence[str]) -> tuple[str, list[RawCall]]:
    """The envelope: ``{"content": "..."}`` or ``{"tool_calls": [...]}``, as the whole
    reply or after some text (then it must open with one of the two keys)."""
    body = raw.lstrip()
    if body.startswith("{"):
        start = len(raw) - len(body)
    else:
        start = call_openings(family, names).find(raw)
        if start < 0:
            return raw, []
    before = raw[:start]
    try:
        value, end = json_at(raw, start)
    except UnreadableCall:
        opening = ENVELOPE_CONTENT.match(raw, start)
        if opening:
            # a content envelope cut short: its text so far is the answer
            return _around(before, decode_partial_string(raw[opening.end() :])[0], ""), []
        if _TOOL_CALLS_OPENING.match(raw, start):
            raise
        return raw, []
    if not isinstance(value, dict) or not ({"content", "tool_calls"} & value.keys()):
        return raw, []
    content = value.get("content")
    text = content if isinstance(content, str) else ""
    listed = value.get("tool_calls", [])
    if not isinstance(listed, list):
        raise UnreadableCall("'tool_calls' is not a list")
    return _around(before, text, raw[end:]), [call_of_object(item) for item in listed]


def _around(before: str, content: str, after: str) -> str:
    """An envelope's answer with the text around it, one line each; the answer is kept
    as written (a stream has already shown it so)."""
    parts = (before.rstrip(), content, after.strip())
    return "\n".join(part for part in parts if part)
