"""The globals and the filters a chat template finds beside jinja2's own.

Mirrors llama.cpp's built-ins in ``common/jinja/value.cpp``: ``raise_exception`` (the
template's message becomes the error), ``strftime_now`` (the rendering's clock),
``tojson`` (llama.cpp's JSON writer), ``safe`` (no Markup) and ``string`` (numbers as
``tojson`` writes them). jinja2's ``lipsum`` is kept, bounded by the caps of
``budget``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import soft_str

from .budget import MAX_WALK, is_int, refuse
from .probe import mark_used_deep


class RaisedByTemplate(TemplateError):
    """raise_exception() called by the template itself."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def strftime_now(fmt: str, local: time.struct_time) -> str:
    """The ``strftime_now`` built-in, for the rendering whose clock reads ``local``."""
    if not isinstance(fmt, str):
        raise RaisedByTemplate("strftime_now: format must be a string")
    return time.strftime(fmt, local)


def raise_exception(message: object) -> None:
    """The ``raise_exception`` built-in: the rendering fails with ``message``."""
    raise RaisedByTemplate(str(message))


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """The ``tojson`` filter, writing JSON as llama.cpp's ``value_to_json`` does.

    That is json.dumps (no HTML escaping, unlike jinja2's own tojson) but for numbers
    with a fraction part, which C++'s stream writes with six significant digits (1.0 is
    ``1``, 0.1234567 is ``0.123457``), and for anything JSON has no place for (an
    undefined value), which is ``null``. An indent that is not an integer is ignored.
    """
    mark_used_deep(value)
    if sort_keys:
        raise TemplateError("tojson sort_keys=true not implemented")
    level = indent if isinstance(indent, int) and not isinstance(indent, bool) else -1
    items = list(separators) if isinstance(separators, (list, tuple)) else []
    item_sep = str(items[0]) if items else (", " if level < 0 else ",")
    key_sep = str(items[1]) if len(items) > 1 else ": "
    out: list[str] = []
    _write_json(out, value, 0, level, item_sep, key_sep, bool(ensure_ascii))
    return "".join(out)


def _write_json(
    out: list[str],
    value: Any,
    depth: int,
    indent: int,
    item_sep: str,
    key_sep: str,
    ascii_only: bool,
) -> None:
    if isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=ascii_only))
    elif value is None or isinstance(value, bool):
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format(value, "g"))  # C++ ostream default: six significant digits
    elif isinstance(value, (list, tuple, dict)):
        pairs = isinstance(value, dict)
        # the base classes' walks: a probe's values must not record this as a read
        entries: list[Any]
        if isinstance(value, dict):
            entries = list(dict.items(value))
        elif isinstance(value, list):
            entries = list(list.__iter__(value))
        else:
            entries = list(tuple.__iter__(value))
        out.append("{" if pairs else "[")
        if entries:
            newline = "\n" if indent >= 0 else ""
            inner = " " * (indent * (depth + 1)) if indent > 0 else ""
            out.append(newline)
            for i, entry in enumerate(entries):
                out.append(inner)
                if pairs:
                    key, entry = entry
                    _write_json(out, str(key), depth + 1, indent, item_sep, key_sep, ascii_only)
                    out.append(key_sep)
                _write_json(out, entry, depth + 1, indent, item_sep, key_sep, ascii_only)
                if i < len(entries) - 1:
                    out.append(item_sep)
                out.append(newline)
            out.append(" " * (indent * depth) if indent > 0 else "")
        out.append("}" if pairs else "]")
    else:
        out.append("null")


def safe(value: Any) -> str:
    """The ``safe`` filter: a string unchanged, a number as JSON, as in llama.cpp.

    jinja2's ``safe`` makes a Markup, which HTML-escapes every string later added to it
    (functionary's ``"Use the function '"|safe + name`` would print ``&#34;``); llama.cpp
    has no escaping at all.
    """
    if isinstance(value, str):
        return str.__str__(value)  # a plain str, even from a Markup
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return tojson(value)
    raise TemplateError(f"Unknown (built-in) filter 'safe' for type {type(value).__name__}")


def string(value: Any) -> Any:
    """The ``string`` filter: a number as JSON (llama.cpp writes ``1.0 | string`` as
    ``1``, as its ``tojson`` does), anything else as jinja2 makes it a string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return tojson(value)
    return soft_str(value)


def lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> str:
    """jinja2's ``lipsum`` global, refused past MAX_WALK words (it writes them in Python)."""
    if is_int(n) and is_int(max) and n * max > MAX_WALK:
        raise refuse("lorem ipsum of that many words", n * max, MAX_WALK)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)
