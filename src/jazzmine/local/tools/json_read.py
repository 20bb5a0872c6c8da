"""Reading JSON out of a model's reply: a value where a call starts, and a string
that may still be arriving.

A model writes JSON inside free text (after a trigger, as the whole reply, inside an
envelope), so a value is decoded where it starts and the reader learns where it ends;
the text after it is the caller's to judge. A string cut off mid-escape (a stream, or a
reply cut by max_tokens) decodes as far as it safely can. JSON that cannot be read
where a call started raises ``UnreadableCall``, which ``parse`` turns into
``LLMToolCallError``.
"""

from __future__ import annotations

import json
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
