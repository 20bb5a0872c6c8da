"""Reading JSON out of a model's reply: a value where a call starts, and a string
that may still be arriving.

A model writes JSON inside free text (after a trigger, as the whole reply, inside an
envelope), so a value is decoded where it starts and the reader learns where it ends;
the text after it is the caller's to judge. A string cut off mid-escape (a stream, or a
reply cut by max_tokens) decodes as far as it safely can. A call object (``{"name",
"arguments"}`` and its variants) becomes a ``RawCall``, not yet checked. JSON that
cannot be read where a call started raises ``UnreadableCall``, which ``parse``
turns into ``LLMToolCallError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder(strict=False)


class UnreadableCall(Exception):
    """A call was started and cannot be read (internal; becomes LLMToolCallError)."""


def json_at(text: str, pos: int) -> tuple[Any, int]:
    """The JSON value starting at ``pos`` (after whitespace) and where it ends."""
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError as exc:
        raise UnreadableCall(f"invalid JSON ({exc.args[0] if exc.args else exc})") from None
    except RecursionError:
        # a reply of "[[[[..." nests deeper than Python's decoder goes
        raise UnreadableCall("JSON nested too deeply to read") from None


def one_json(text: str) -> tuple[Any, int]:
    value, end = json_at(text, 0)
    if text[end:].strip():
        raise UnreadableCall(f"unexpected text after the call: {text[end:].strip()[:40]!r}")
    return value, end


# ---------- JSON strings arriving in pieces ----------


def _safe_string_end(body: str) -> tuple[int, bool]:
    """How much of a JSON string's inside can be decoded now, and whether its closing
    quote was reached (then the first value is the quote's index)."""
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            return i, True
        if char != "\\":
            i += 1
            continue
        if i + 1 >= len(body):
            return i, False
        if body[i + 1] != "u":
            i += 2
            continue
        if i + 6 > len(body):
            return i, False
        if 0xD800 <= _hex(body[i + 2 : i + 6]) < 0xDC00:
            # a high surrogate decodes with the low one that follows it
            if i + 12 > len(body):
                return i, False
            i += 12 if body[i + 6 : i + 8] == "\\u" else 6
        else:
            i += 6
    return i, False


def _hex(digits: str) -> int:
    try:
        return int(digits, 16)
    except ValueError:
        return -1


def decode_partial_string(body: str) -> tuple[str, int, bool]:
    """Decode the inside of a JSON string that may be incomplete: (text, characters of
    ``body`` used, closed)."""
    end, closed = _safe_string_end(body)
    try:
        text = _DECODER.decode(f'"{body[:end]}"')
    except ValueError:
        text = body[:end]  # a broken escape: keep it as written
    return str(text), end, closed


# ---------- call objects ----------


@dataclass(frozen=True)
class RawCall:
    """A call as the model wrote it, before it is checked."""

    name: Any
    arguments: Any
    model_id: Any = None


def is_call_object(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if value.get("type") == "function" and isinstance(value.get("function"), dict):
        value = value["function"]
    return isinstance(value.get("name"), str) and (
        "parameters" in value or "arguments" in value or set(value) == {"name"}
    )


def call_of_object(value: Any) -> RawCall:
    """One call from its JSON object: {"name", "arguments"|"parameters", "id"?}, also
    inside OpenAI's {"type": "function", "function": {...}} wrapper."""
    if not isinstance(value, dict):
        raise UnreadableCall(f"a call must be a JSON object, got {value!r}")
    ident = value.get("id")
    if value.get("type") == "function" and isinstance(value.get("function"), dict):
        value = value["function"]
    if "name" not in value:
        raise UnreadableCall(f"a call has no 'name': {value!r}")
    arguments = value.get("arguments", value.get("parameters"))
    return RawCall(value["name"], arguments, ident)
