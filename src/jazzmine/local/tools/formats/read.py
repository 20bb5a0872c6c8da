"""Reading calls written in a template's own format (``CallFormat``) out of a reply.

Markup is matched as the template writes it, except that a run of whitespace in it
may be any run (a model drops or doubles newlines) and a closing that the reply does
not reach (generation stopped on it, or was cut) is taken as written, and so is what
the template closes every turn with after the calls. A string value of a parameter is
the raw text up to its closing markup; any other value is JSON (a number written as
text is read as JSON too), or a Python literal standing for JSON (``{'a': True}``,
``['x']``: what a template printing the value with ``{{ v }}`` writes, and so a model
trained on it).
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..json_read import RawCall, UnreadableCall, json_at
from .shape import ARGS, CALL_ID, INDEX, NAME, CallFormat, Params

Schemas = Mapping[str, Any]
_NAME = r"[\w.\-]+"


def literal(text: str, exact_tail: bool = False) -> str:
    """A regex for markup ``text``, after any whitespace, whose whitespace runs match
    any run (``exact_tail``:
    trailing whitespace is matched as written or not at all, so a value after it keeps
    its own leading spaces)."""
    stripped = text.rstrip() if exact_tail else text
    out = [r"\s*" if part.isspace() else re.escape(part) for part in re.split(r"(\s+)", stripped)]
    # whitespace may come before any markup (a model's newline after a value)
    pattern = "".join(out) if not stripped or stripped[0].isspace() else r"\s*" + "".join(out)
    if exact_tail and stripped != text:
        pattern += f"(?:{re.escape(text[len(stripped) :])})?"
    return pattern


def _pattern(pieces: Sequence[tuple[str, str]]) -> str:
    out: list[str] = []
    named: set[str] = set()
    for kind, value in pieces:
        if kind == "lit":
            out.append(literal(value))
        elif kind in (NAME, CALL_ID):
            group = _NAME if kind == NAME else r"[\w\-]+"
            out.append(group if kind in named else f"(?P<{kind}>{group})")
            named.add(kind)
        elif kind == INDEX:
            out.append(r"\d+")
    return "".join(out)


@dataclass(frozen=True)
class _Compiled:
    first: re.Pattern[str]  # the section's opening and a call up to its arguments
    head: re.Pattern[str]  # a further call up to its arguments
    tail: re.Pattern[str]  # a call after its arguments
    separator: re.Pattern[str]
    close: re.Pattern[str]
    turn_end: re.Pattern[str]
    rest: str  # what a reply may stop inside of after the arguments
    opening: str  # the first word of a call's own markup ("" without one)


@functools.lru_cache(maxsize=64)
def _compiled(fmt: CallFormat) -> _Compiled:
    kinds = [kind for kind, _ in fmt.call]
    at = kinds.index(ARGS)
    head, tail = fmt.call[:at], fmt.call[at + 1 :]
    tail_text = "".join(v for k, v in tail if k == "lit")
    return _Compiled(
        re.compile(literal(fmt.open) + _pattern(head)),
        re.compile(_pattern(head)),
        re.compile(_pattern(tail)),
        re.compile(literal(fmt.separator)),
        re.compile(literal(fmt.close)),
        re.compile(literal(fmt.turn_end)),
        (tail_text + fmt.close).strip(),
        next(iter(head[0][1].split()), "") if head and head[0][0] == "lit" else "",
    )


def find_call(text: str, fmt: CallFormat, names: Sequence[str], begin: int = 0) -> int:
    """Where the first call section starts at or after ``begin``, or -1. A format
    whose calls have no markup of their own starts one only at the reply's start,
    with one of ``names``."""
    if fmt.trigger:
        return text.find(fmt.trigger, begin)
    start = len(text) - len(text.lstrip())
    if begin > start:
        return -1
    match = _compiled(fmt).first.match(text, start)
    return start if match is not None and match.group(NAME) in names else -1


def read_calls(
    text: str, fmt: CallFormat, schemas: Schemas, begin: int = 0
) -> tuple[int, list[RawCall], int]:
    """The first call section at or after ``begin``: (its start, its calls, its end);
    (-1, [], begin) without one. A section that cannot be read raises UnreadableCall."""
    start = find_call(text, fmt, list(schemas), begin)
    if start < 0:
        return -1, [], begin
    parts = _compiled(fmt)
    match = parts.first.match(text, start)
    if match is None:
        raise UnreadableCall(f"{fmt.trigger!r} is not followed by a call in the template's format")
    calls: list[RawCall] = []
    while True:
        name = match.group(NAME)
        ident = match.groupdict().get(CALL_ID)
        arguments, pos = _arguments(text, match.end(), fmt, schemas.get(name))
        ending = parts.tail.match(text, pos)
        if ending is not None:
            pos = ending.end()
        elif parts.rest.startswith(text[pos:].strip()):
            pos = len(text)
        else:
            raise UnreadableCall(f"the call to {name!r} is not closed as the template closes it")
        calls.append(RawCall(name, arguments, ident))
        separated = parts.separator.match(text, pos)
        at = separated.end() if separated else pos
        following = parts.head.match(text, at)
        if following is None or following.end() == pos:
            if parts.opening and text[at:].lstrip().startswith(parts.opening):
                raise UnreadableCall("a further call was started and not finished")
            break
        match = following
    for pattern, written in ((parts.close, fmt.close), (parts.turn_end, fmt.turn_end)):
        closing = pattern.match(text, pos)
        if closing is not None and written.strip():
            pos = closing.end()
        elif text[pos:].strip() and written.strip().startswith(text[pos:].strip()):
            pos = len(text)
    return start, calls, pos


def split_calls(
    raw: str, fmt: CallFormat, schemas: Schemas
) -> tuple[str, list[str], list[RawCall]]:
    """The text before the first call section, the texts after each section, the calls."""
    start, calls, end = read_calls(raw, fmt, schemas)
    if start < 0:
        return raw, [], []
    before, tail = raw[:start], []
    while True:
        nxt, more, after = read_calls(raw, fmt, schemas, end) if fmt.trigger else (-1, [], end)
        tail.append(raw[end : nxt if nxt >= 0 else len(raw)])
        if nxt < 0:
            return before, tail, calls
        calls += more
        end = after


def _arguments(text: str, pos: int, fmt: CallFormat, schema: Any) -> tuple[Any, int]:
    if fmt.params is None:
        return json_at(text, pos)
    return _parameters(text, pos, fmt.params, schema)


def _is_string(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and kind == ["string"])


def _parameters(text: str, pos: int, p: Params, schema: Any) -> tuple[dict[str, Any], int]:
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    key = re.compile(literal(p.key_open) + f"(?P<key>{_key_names(properties)})")
    separator = re.compile(literal(p.separator))
    arguments: dict[str, Any] = {}
    while True:
        separated = separator.match(text, pos) if p.separator.strip() else None
        found = key.match(text, separated.end() if separated else pos)
        if found is None:
            return arguments, pos
        name = found.group("key")
        variants = (
            (p.string_open, p.string_end(name), True),
            (p.value_open, p.value_end(name), False),
        )
        string = _is_string(properties.get(name))
        chosen = _variant(text, found.end(), variants if string else variants[::-1])
        if chosen is None:
            raise UnreadableCall(f"parameter {name!r} is not written as the template writes one")
        opened, closing, as_string = chosen
        keep_text = as_string and (string or name not in properties)
        arguments[name], pos = _value(text, opened, closing, keep_text)
        if not found.end() < pos:
            return arguments, pos


def _key_names(properties: Any) -> str:
    """A regex for a parameter's name: the schema's own names, which the grammar writes
    whatever their characters (longest first, none cut short: "a" is not read in "ab"),
    else a name of word characters."""
    names = sorted((k for k in properties if isinstance(k, str) and k), key=len, reverse=True)
    return "|".join([*(re.escape(k) + r"(?![\w.\-])" for k in names), _NAME])


def _variant(
    text: str, pos: int, variants: Sequence[tuple[str, str, bool]]
) -> tuple[int, str, bool] | None:
    """The first (opening, closing, string) way of writing a value that the text takes
    at ``pos``: where the value starts, its closing, whether it is a string one."""
    for opening, closing, as_string in variants:
        opened = re.compile(literal(opening, exact_tail=True)).match(text, pos)
        if opened is not None:
            return opened.end(), closing, as_string
    return None


def _value(text: str, pos: int, closing: str, string: bool) -> tuple[Any, int]:
    """One parameter's value from ``pos``: raw text up to ``closing``, or JSON."""
    mark = closing.strip()
    if not mark:
        return _literal_at(text, pos)
    at = text.find(mark, pos)
    if at < 0:
        raise UnreadableCall(f"a parameter value is never closed with {mark!r}")
    raw = text[pos:at]
    lead = closing[: len(closing) - len(closing.lstrip())]
    if lead and raw.endswith(lead):
        raw = raw[: len(raw) - len(lead)]
    end = re.compile(literal(closing[len(lead) :])).match(text, at)
    return (raw if string else _json_or_text(raw)), (end.end() if end else at + len(mark))


def _literal_at(text: str, pos: int) -> tuple[Any, int]:
    """A value with no closing markup of its own: JSON, else a Python literal up to the
    first "," or closing bracket outside it (LFM2.5 prints ``tags=['a', 'b']``)."""
    try:
        return json_at(text, pos)
    except UnreadableCall:
        end = _literal_end(text, pos)
        value = _python(text[pos:end])
        if value is _NOT_PYTHON:
            raise
    return value, end


def _literal_end(text: str, pos: int) -> int:
    depth, quote, at = 0, "", pos
    while at < len(text):
        char = text[at]
        if quote:
            if char == "\\":
                at += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
        at += 1
    return at


_NOT_PYTHON = object()


def _python(raw: str) -> Any:
    """The JSON value a Python literal stands for (``{'a': True}``), as llama.cpp's
    reader also takes one; _NOT_PYTHON when ``raw`` is none."""
    try:
        # the JSON round trip refuses what JSON has no value for (sets, bytes, ...)
        return json.loads(json.dumps(ast.literal_eval(raw.strip())))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_PYTHON


def _json_or_text(raw: str) -> Any:
    """JSON; else a Python literal standing for JSON (a template printing an object with
    ``{{ v }}`` writes ``{'a': True}``); else the text."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        pass
    value = _python(raw)
    return raw if value is _NOT_PYTHON else value
