"""jinja2's filters made to count a step, check their arguments and cap their result.

Each filter a template can call is wrapped (metered_filter): a step of the rendering's
budget, a refusal of values too long to walk or print, a per-filter check of the
arguments that set its result's size (``center(10**9)``, ``indent``, ``tojson(indent=)``,
``sum(start=[])``...), and its result charged against the caps of ``budget``.
No llama.cpp counterpart: a sandbox limit of ours.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from .budget import MAX_WALK, built, check_items, check_text, is_int, refuse, step
from .formats import check_printf
from .operators import SEQUENCES, replaced_size
from .shape import check_printable, text_shape

# Filters whose value is walked item by item (or character by character) in Python:
# a value longer than MAX_WALK would keep one operation busy for seconds. (title is
# ours and counts steps as it goes, template_strings.py.)
_WALKING = frozenset(
    {
        "wordwrap",
        "urlize",
        "unique",
        "map",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "groupby",
        "sort",
        "dictsort",
        "min",
        "max",
        "batch",
        "slice",
        "sum",
        "pprint",
    }
)
# Filters that turn their value (and arguments) into text.
_PRINTING = frozenset(
    {
        "string",
        "tojson",
        "pprint",
        "join",
        "format",
        "center",
        "indent",
        "replace",
        "wordwrap",
        "truncate",
        "trim",
        "strip",
        "lstrip",
        "rstrip",
        "upper",
        "lower",
        "capitalize",
        "title",
        "urlize",
        "striptags",
        "escape",
        "e",
        "forceescape",
        "safe",
        "xmlattr",
        "urlencode",
        "wordcount",
    }
)


# Adding sequences (``sum(start=[])``) copies the running total each time; at most this
# many items are copied in all.
_MAX_COPIES = 1 << 26


def _guard_center(a: dict[str, Any]) -> None:
    if is_int(a["width"]):
        check_text(a["width"])


def _guard_indent(a: dict[str, Any]) -> None:
    # as jinja2's do_indent pads: the first line only with first=, blank lines only
    # with blank=
    text, width = str(a["s"]), a["width"]
    pad = width if is_int(width) else len(str(width))
    lines = (text + "\n").splitlines()
    padded = bool(a["first"]) + (len(lines) - 1 if a["blank"] else sum(map(bool, lines[1:])))
    check_text(len(text) + padded * max(pad, 0))


def _guard_format(a: dict[str, Any]) -> None:
    check_printf(str(a["value"]), a["kwargs"] or a["args"])


def _guard_join(a: dict[str, Any]) -> None:
    value = a["value"]
    if isinstance(value, (list, tuple, dict, str)):
        check_text(len(str(a["d"])) * max(len(value) - 1, 0))


def _guard_replace(a: dict[str, Any]) -> None:
    check_text(replaced_size(str(a["s"]), str(a["old"]), str(a["new"]), a["count"]))


def _guard_wordwrap(a: dict[str, Any]) -> None:
    if a["wrapstring"] is not None:
        check_text(len(str(a["s"])) * (1 + len(str(a["wrapstring"]))))


def _guard_batch(a: dict[str, Any]) -> None:
    if a["fill_with"] is not None and is_int(a["linecount"]):
        check_items(a["linecount"])


def _guard_slice(a: dict[str, Any]) -> None:
    if is_int(a["slices"]):
        check_items(a["slices"])


def _guard_sum(a: dict[str, Any]) -> None:
    iterable = a["iterable"]
    if isinstance(a["start"], SEQUENCES) and isinstance(iterable, (list, tuple)):
        total = sum(len(item) for item in iterable if isinstance(item, SEQUENCES))
        if total * len(iterable) > _MAX_COPIES:
            raise refuse("a sum copying that many items", total * len(iterable), _MAX_COPIES)


def _guard_tojson(a: dict[str, Any]) -> None:
    indent = a["indent"]
    if indent is not None:
        # json.dumps builds the indent string first, then indents every line by up to
        # depth times it
        pad = indent if is_int(indent) else len(str(indent))
        check_text(pad)
        items, chars, depth = text_shape(a["value"])
        check_text(chars + items * (max(pad, 0) * depth + 2))


# Filters whose value, when a generator (what jinja2's map, select and selectattr
# return), is made a list first: llama.cpp's filters return arrays, so ``tools |
# map(attribute='function') | tojson`` prints a JSON array there.
_LISTING = frozenset({"tojson"})


def _as_list(items: Iterator[Any]) -> list[Any]:
    found: list[Any] = []
    for item in items:
        step()
        found.append(item)
    check_items(len(found))
    return found


# Per filter: a check of its arguments, bound by name to the filter's own signature.
_GUARDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _guard_center,
    "indent": _guard_indent,
    "format": _guard_format,
    "join": _guard_join,
    "replace": _guard_replace,
    "wordwrap": _guard_wordwrap,
    "batch": _guard_batch,
    "slice": _guard_slice,
    "sum": _guard_sum,
    "tojson": _guard_tojson,
}


def metered_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (the filter ``name``) counted as a step, guarded, its result capped.

    The wrapper takes the filter's own arguments: jinja2's pass-context marker is
    copied onto it (functools.wraps copies ``__dict__``), so jinja2 calls it the same way.
    """
    guard = _GUARDS.get(name)
    # jinja2's async-variant filters (list, slice) take an evaluation context first that
    # the function they wrap, whose signature inspect reports, does not: skip it
    target = inspect.unwrap(function)
    skipped = int(hasattr(function, "jinja_pass_arg") and not hasattr(target, "jinja_pass_arg"))
    signature = inspect.signature(target) if guard is not None else None
    # the value is the first argument, after the context/environment jinja2 passes
    value_index = 1 if hasattr(function, "jinja_pass_arg") else 0
    walking = name in _WALKING
    printing = name in _PRINTING
    listing = name in _LISTING

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        step()
        if listing and len(args) > value_index and isinstance(args[value_index], Iterator):
            args = (*args[:value_index], _as_list(args[value_index]), *args[value_index + 1 :])
        if walking and len(args) > value_index:
            value = args[value_index]
            if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_WALK:
                raise refuse("a walk over that many items", len(value), MAX_WALK)
        if printing:
            check_printable(*args[value_index:], *kwargs.values())
        if guard is not None and signature is not None:
            try:
                bound = signature.bind(*args[skipped:], **kwargs)
            except TypeError:
                pass  # arguments the filter itself rejects; let it say so
            else:
                bound.apply_defaults()
                guard(bound.arguments)
        return built(function(*args, **kwargs))

    return wrapper
