"""String methods and filters as llama.cpp's Jinja engine has them: ASCII-only, bytewise.

llama.cpp's engine works on UTF-8 bytes with the C library's ctype: case changes and
whitespace stripping touch ASCII only, and a string's length is its byte count. Python
would uppercase "é" and strip U+3000 (ideographic space), so these stand in for the str methods and
filters of the same names. Mirrors ``common/jinja/string.cpp`` (the case and strip
functions) and the ``length`` built-in of ``common/jinja/value.cpp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .budget import step

# C isspace in the "C" locale
ASCII_SPACE = " \t\n\v\f\r"
_TO_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_upper(text: str) -> str:
    return str(text).translate(_TO_UPPER)


def _ascii_lower(text: str) -> str:
    return str(text).translate(_TO_LOWER)


def _ascii_capitalize(text: str) -> str:
    text = str(text)
    return _ascii_upper(text[:1]) + _ascii_lower(text[1:])


# title() walks the text in Python; between chunks of this many characters it counts a
# step, so a long text stays within the rendering's deadline (template_budget.py)
_TITLE_CHUNK = 1 << 16


def _ascii_title(text: str) -> str:
    out: list[str] = []
    start_word = True
    text = str(text)
    for begin in range(0, len(text), _TITLE_CHUNK):
        step()
        for char in text[begin : begin + _TITLE_CHUNK]:
            if char in ASCII_SPACE:
                start_word = True
                out.append(char)
            elif start_word:
                out.append(_ascii_upper(char))
                start_word = False
            else:
                out.append(_ascii_lower(char))
    return "".join(out)


def _ascii_strip(text: str, chars: str | None = None) -> str:
    return str(text).strip(ASCII_SPACE if chars is None else chars)


def _ascii_lstrip(text: str, chars: str | None = None) -> str:
    return str(text).lstrip(ASCII_SPACE if chars is None else chars)


def _ascii_rstrip(text: str, chars: str | None = None) -> str:
    return str(text).rstrip(ASCII_SPACE if chars is None else chars)


# by method name: the replacements for str methods, also installed as filters
STRING_FUNCTIONS: dict[str, Callable[..., str]] = {
    "upper": _ascii_upper,
    "lower": _ascii_lower,
    "capitalize": _ascii_capitalize,
    "title": _ascii_title,
    "strip": _ascii_strip,
    "lstrip": _ascii_lstrip,
    "rstrip": _ascii_rstrip,
}


def byte_length(value: Any) -> int:
    """The ``length`` filter: a string's UTF-8 byte count, any other value's len()."""
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="surrogatepass"))
    return len(value)
