"""The globals and the ``tojson`` filter a chat template finds beside jinja2's own.

Mirrors llama.cpp's built-ins in ``common/jinja/value.cpp``: ``raise_exception`` (the
template's message becomes the error), ``strftime_now`` (the rendering's clock) and
``tojson`` (Hugging Face's: plain JSON, no HTML escaping). jinja2's ``lipsum`` is kept,
bounded by the caps of ``template_budget``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.utils import generate_lorem_ipsum

from .template_budget import MAX_WALK, is_int, refuse
from .template_probe import mark_used_deep


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
    """The ``tojson`` filter."""
    # Hugging Face's tojson: plain json.dumps, no HTML escaping (jinja2's own escapes <>&')
    mark_used_deep(value)
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


def lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> str:
    """jinja2's ``lipsum`` global, refused past MAX_WALK words (it writes them in Python)."""
    if is_int(n) and is_int(max) and n * max > MAX_WALK:
        raise refuse("lorem ipsum of that many words", n * max, MAX_WALK)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)
