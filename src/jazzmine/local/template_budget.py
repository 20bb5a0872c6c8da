"""Bounds on the work one chat-template rendering may do: time, steps and sizes.

A chat template is code from a model file or from the caller, run in jinja2's sandbox.
The sandbox keeps it away from Python's internals but not from working forever or
filling memory: nested loops over ``range(100000)``, a macro calling itself twice per
level, ``'a' * 10**9``, ``'{:>999999999}'.format(1)``, a list that contains itself
twice per level of a loop and is then printed. llama.cpp's engine renders inside the
server, under the request's timeout; here rendering runs in the caller's process, so
every rendering gets bounds of its own:

- a deadline (the call's, ``time.monotonic()`` based), checked at every loop iteration,
  call, filter and piece of output; past it, DeadlineExceeded;
- without a deadline, a step budget (MAX_STEPS) instead, so the rendering still ends;
- size caps: no string over MAX_TEXT characters, no list or dict over MAX_ITEMS items,
  no prompt over MAX_TEXT, checked *before* the operations whose result can dwarf their
  operands (repetition, padding widths, replacements, joins, powers, formatting), and
  no single operation walking over MAX_WALK items in Python (printing a value, a filter
  such as ``unique``) where no step can be counted between them;
- a cap on all the text one rendering builds (MAX_BUILT), so memory stays bounded when
  a template keeps many large values alive.

Every single operation is thereby bounded (well under a second on these caps), and the
deadline is checked between any two. A limit that is hit raises TemplateLimitError,
which the renderer reports as an invalid request. No llama.cpp counterpart.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.runtime import markup_join, str_join
from jinja2.utils import Namespace, generate_lorem_ipsum

from .errors import DeadlineExceeded

# characters in one string the template builds, and in the rendered prompt
MAX_TEXT = 64 * 1024 * 1024
# items in one list, tuple or dict the template builds
MAX_ITEMS = 1 << 22
# items (or characters) one operation walks in Python, where no step is counted between
# them: about a second's work
MAX_WALK = 1 << 20
# characters and items built in total by one rendering (the prompt, a few copies of it,
# and room to spare), which bounds its memory
MAX_BUILT = 4 * MAX_TEXT
# loop iterations, calls, filters and output pieces in one rendering; real templates
# take tens per message, and a rendering with no deadline still ends within seconds
MAX_STEPS = 1 << 20
# bits in an integer built by ``*`` or ``**`` (str() refuses past ~14000 bits anyway)
MAX_INT_BITS = 1 << 16
# Outside a rendering, jinja2 is folding constant expressions while compiling: a folded
# value is written into the generated Python source as a literal, which costs seconds
# to compile for a million items, and no deadline applies yet. So while compiling the
# caps are these; a fold they refuse is computed when the template runs instead, under
# the full caps (the same value, so the same prompt).
_FOLD_TEXT = 1 << 16
_FOLD_ITEMS = 1 << 12
# (and Python cannot write an int of over 4300 digits as a literal at all)
_FOLD_INT_BITS = 1 << 13


class TemplateLimitError(TemplateError):
    """The template tried to do more work, or build more text, than a rendering may."""


class _Budget:
    """What one rendering has left: steps, characters to build, time."""

    __slots__ = ("built", "deadline", "steps")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.steps = 0
        self.built = 0

    def step(self) -> None:
        if self.deadline is None:
            # no deadline to stop it: the step count is what bounds the rendering
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise TemplateLimitError(f"chat template took more than {MAX_STEPS} steps")
        elif time.monotonic() >= self.deadline:
            raise DeadlineExceeded("chat template rendering ran past the deadline")

    def build(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            raise TemplateLimitError(f"chat template built more than {MAX_BUILT} characters in all")


# the deadline of the render() call in progress, and the budget of the rendering in
# progress (a render() call runs several: capability probes, then the prompt)
_deadline: ContextVar[float | None] = ContextVar("template_deadline", default=None)
_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Renderings inside the block stop with DeadlineExceeded past ``deadline``."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("chat template rendering ran past the deadline")
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def bounded_render(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """``compiled.render(context)`` with a fresh budget under the current deadline."""
    token = _budget.set(_Budget(_deadline.get()))
    try:
        return compiled.render(context)
    finally:
        _budget.reset(token)


def step() -> None:
    """Count a step of the rendering in progress: past its deadline or budget, raise.

    Outside a rendering (jinja2 folding constants while compiling) nothing is counted.
    """
    budget = _budget.get()
    if budget is not None:
        budget.step()


def _refuse(what: str, size: int, limit: int) -> TemplateLimitError:
    return TemplateLimitError(f"chat template would build {what}: {size} (limit {limit})")


def check_text(size: int) -> None:
    limit = MAX_TEXT if _budget.get() is not None else _FOLD_TEXT
    if size > limit:
        raise _refuse("a string of that many characters", size, limit)


def check_items(size: int) -> None:
    limit = MAX_ITEMS if _budget.get() is not None else _FOLD_ITEMS
    if size > limit:
        raise _refuse("a list of that many items", size, limit)


def built(value: Any) -> Any:
    """``value``, after checking its size against the caps and charging it."""
    if isinstance(value, (str, bytes)):
        check_text(len(value))
    elif isinstance(value, (list, tuple, dict)):
        check_items(len(value))
    else:
        return value
    budget = _budget.get()
    if budget is not None:
        budget.build(len(value))
    return value


# --- text a value turns into ------------------------------------------------------------

_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace)


def text_shape(value: Any) -> tuple[int, int, int]:
    """(items, characters, depth) of ``value`` as str(), repr() or JSON would walk it.

    A list can hold another list twice, so a handful of objects can print as gigabytes
    (``{% set ns.x = [ns.x, ns.x] %}`` forty times); counting every path, not every
    object, refuses that before Python's own printing runs, which cannot be stopped.
    Walks at most MAX_WALK items. The base classes' iterators are used so the
    capability probes' values (template_probe.py) do not record the walk as a use.
    """
    if not isinstance(value, _CONTAINERS):
        return 1, len(value) if isinstance(value, str) else 0, 0
    items = chars = depth = 0
    level: list[Any] = [value]
    while level:
        depth += 1
        items += len(level)
        if items > MAX_WALK:
            raise _refuse("text from a value of that many items", items, MAX_WALK)
        below: list[Any] = []
        for item in level:
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, list):
                below.extend(list.__iter__(item))
            elif isinstance(item, tuple):
                below.extend(tuple.__iter__(item))
            elif isinstance(item, dict):
                below.extend(dict.keys(item))
                below.extend(dict.values(item))
            elif isinstance(item, (set, frozenset)):
                below.extend(item)
            elif isinstance(item, Namespace):
                below.extend(dict.values(object.__getattribute__(item, "_Namespace__attrs")))
        if chars > MAX_TEXT:
            raise _refuse("text of that many characters", chars, MAX_TEXT)
        level = below
    return items, chars, depth - 1


def check_printable(*values: Any) -> None:
    """Refuse values whose text (str, repr or JSON) would be too long to build."""
    for value in values:
        if isinstance(value, _CONTAINERS):
            text_shape(value)


def finalize(value: Any) -> Any:
    """The environment's ``finalize``: each ``{{ value }}`` is checked before printing."""
    check_printable(value)
    return value


# --- hooks the rewritten template calls (see template_jinja.py) -----------------------


def _metered(iterable: Iterable[Any], budget: _Budget) -> Iterator[Any]:
    for item in iterable:
        budget.step()
        yield item


@jinja2.pass_context
def iterate(context: jinja2.runtime.Context, iterable: Any) -> Any:
    """What a ``{% for %}`` loops over: the same items, one step each."""
    budget = _budget.get()
    return iterable if budget is None else _metered(iterable, budget)


@jinja2.pass_context
def joined(context: jinja2.runtime.Context, values: list[Any]) -> str:
    """The ``~`` operator: as jinja2 joins the operands, with the size checked first."""
    check_printable(*values)
    parts = [value if isinstance(value, str) else str(value) for value in values]
    check_text(sum(map(len, parts)))
    eval_ctx = context.eval_ctx
    joiner = markup_join if eval_ctx.autoescape or eval_ctx.volatile else str_join
    return built(joiner(parts))  # type: ignore[no-any-return]


class OutputBuffer(list[str]):
    """The output of a macro, ``{% set %}`` block or ``{% filter %}`` block as written.

    jinja2 collects such output in a list and joins it only at the end, so a loop that
    writes fresh text each time would fill memory before concat() could check it; each
    piece is counted, capped and charged as it is written instead.
    """

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def _take(self, size: int) -> None:
        self.size += size
        if self.size > MAX_TEXT:
            raise TemplateLimitError(f"chat template output is over {MAX_TEXT} characters")
        budget = _budget.get()
        if budget is not None:
            budget.step()
            budget.build(size)

    def append(self, piece: str) -> None:
        self._take(len(piece))
        super().append(piece)

    def extend(self, pieces: Iterable[str]) -> None:
        pieces = list(pieces)
        self._take(sum(map(len, pieces)))
        super().extend(pieces)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
}


@jinja2.pass_context
def binop(context: jinja2.runtime.Context, left: Any, name: str, right: Any) -> Any:
    """``left <name> right`` for ``*``, ``**`` and ``%``, refused when it would be outsized."""
    check_binop(name, left, right)
    return built(_OPERATORS[name](left, right))


@jinja2.pass_context
def sliced(context: jinja2.runtime.Context, value: Any, start: Any, stop: Any, step: Any) -> Any:
    """``value[start:stop:step]``: the same slice, its copy capped and charged."""
    return built(value[start:stop:step])


def concat(pieces: Iterable[str]) -> str:
    """The environment's ``concat``: the output of a template, macro or block, capped."""
    budget = _budget.get()
    kept: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_TEXT:
            raise TemplateLimitError(f"chat template output is over {MAX_TEXT} characters")
        if budget is not None:
            budget.step()
        kept.append(piece)
    return built("".join(kept))  # type: ignore[no-any-return]


# --- operators --------------------------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)
# a printf field: %[(name)][flags][width][.precision][length]conversion; width and
# precision may be *, each taking the next argument before the value does
_PRINTF_FIELD = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.S)
_DIGITS = re.compile(r"\d+")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number_text(digits: str) -> None:
    # a width or precision: compared as text first, int() refuses long digit strings
    if len(digits) > 9 or int(digits) > MAX_TEXT:
        raise _refuse("a field padded to", int(digits[:20]), MAX_TEXT)


def _check_numbers_in(value: Any) -> None:
    if _is_int(value):
        check_text(abs(value))
    elif isinstance(value, str):
        for digits in _DIGITS.findall(value):
            _check_number_text(digits)


def check_printf(fmt: str | bytes, args: Any) -> None:
    """``fmt % args``: refuse widths and precisions that pad past the caps."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    values = args if isinstance(args, tuple) else (args,)
    position = 0  # the next argument a field takes
    for match in _PRINTF_FIELD.finditer(text):
        name, width, precision, conversion = match.groups()
        if conversion == "%" and not (name or width or precision):
            continue  # "%%" takes no argument
        for number in (width, precision):
            if number == "*":
                if position < len(values) and _is_int(values[position]):
                    check_text(abs(values[position]))
                position += 1
            elif number:
                _check_number_text(number)
        position += name is None
    check_printable(*values)


def _format_argument(key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The argument a replacement field's name refers to, as str.format looks it up."""
    base = re.split(r"[.\[]", key, maxsplit=1)[0]
    if base.isdecimal():
        # str.format reads any Unicode decimal digits as an index, as int() does
        index = int(base) if len(base) <= 9 else len(args)
        return args[index] if index < len(args) else None
    return kwargs.get(base)


def check_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``fmt.format(*args, **kwargs)``: refuse format specs that pad past the caps."""
    parse = string.Formatter().parse
    try:
        fields = [(field, list(parse(spec or ""))) for _, field, spec, _ in parse(fmt)]
    except ValueError:
        return  # a malformed format string: the call itself fails the same way
    automatic = 0  # the index "{}" stands for, numbered as str.format numbers them
    for field, inner_fields in fields:
        if field == "":
            automatic += 1
        for literal, inner, _, _ in inner_fields:
            for digits in _DIGITS.findall(literal):
                _check_number_text(digits)
            if inner is None:
                continue
            # a spec filled in from the arguments ("{:{}}"): what they hold counts too
            if inner == "":
                value = args[automatic] if automatic < len(args) else None
                automatic += 1
            else:
                value = _format_argument(inner, args, kwargs)
            _check_numbers_in(value)
    check_printable(*args, *kwargs.values())


def _check_bits(bits: int) -> None:
    limit = MAX_INT_BITS if _budget.get() is not None else _FOLD_INT_BITS
    if bits > limit:
        raise _refuse("an integer of that many bits", bits, limit)


def check_binop(name: str, left: Any, right: Any) -> None:
    """Refuse ``left <name> right`` when its result would dwarf the caps."""
    if name == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, _SEQUENCES) and isinstance(count, int):
                size = len(sequence) * max(count, 0)
                if isinstance(sequence, (str, bytes)):
                    check_text(size)
                else:
                    # the copies share their items; printing them is checked when it
                    # happens (check_printable)
                    check_items(size)
        if _is_int(left) and _is_int(right):
            _check_bits(left.bit_length() + right.bit_length())
    elif name == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            _check_bits(left.bit_length() * right)
    elif name == "%":
        if isinstance(left, (str, bytes)):
            check_printf(left, right)
    elif name == "+" and isinstance(left, _SEQUENCES) and type(left) is type(right):
        if isinstance(left, (str, bytes)):
            check_text(len(left) + len(right))
        else:
            check_items(len(left) + len(right))


# --- method calls -----------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _translated_size(text: str, table: dict[Any, Any]) -> int:
    """The length of ``text.translate(table)``, or an upper bound for a large table."""
    longer = {k: len(v) - 1 for k, v in table.items() if isinstance(v, str) and len(v) > 1}
    if len(longer) > 256:
        return len(text) * (1 + max(longer.values()))
    size = len(text)
    for key, extra in longer.items():
        if isinstance(key, int) and 0 <= key <= 0x10FFFF:
            size += text.count(chr(key)) * extra
    return size


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    operands = (text, old, new)
    if not (
        all(isinstance(v, str) for v in operands) or all(isinstance(v, bytes) for v in operands)
    ):
        return 0  # the call fails on its own; nothing to multiply
    found = text.count(old) if old else len(text) + 1
    if _is_int(count) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def check_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call of ``owner.name`` (a str, bytes or int method) that would build too much."""
    if isinstance(owner, (str, bytes)):
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _arg(args, kwargs, 0, "width")
            if _is_int(width):
                check_text(width)
        elif name == "expandtabs":
            tabsize = _arg(args, kwargs, 0, "tabsize")
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            if _is_int(tabsize):
                check_text(len(owner) + tabs * max(tabsize, 0))
        elif name == "replace":
            check_text(
                _replaced_size(
                    owner,
                    _arg(args, kwargs, 0, "old"),
                    _arg(args, kwargs, 1, "new"),
                    _arg(args, kwargs, 2, "count"),
                )
            )
        elif name == "translate":
            table = _arg(args, kwargs, 0, "table")
            if isinstance(table, dict) and isinstance(owner, str):
                check_text(_translated_size(owner, table))
        elif name in ("format", "format_map") and isinstance(owner, str):
            if name == "format_map":
                mapping = args[0] if args and isinstance(args[0], dict) else {}
                check_format(owner, (), mapping)
            else:
                check_format(owner, args, kwargs)
        check_printable(*args, *kwargs.values())
    elif isinstance(owner, int) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length")
        if _is_int(length):
            check_text(length)


def joined_items(owner: Any, items: Any) -> list[Any]:
    """``owner.join(items)``'s items as a list, refused when the join would be too long."""
    materialized = list(items) if not isinstance(items, list) else items
    check_items(len(materialized))
    if isinstance(owner, (str, bytes)):
        size = len(owner) * max(len(materialized) - 1, 0)
        size += sum(len(item) for item in materialized if isinstance(item, (str, bytes)))
        check_text(size)
    return materialized


def lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> str:
    """jinja2's ``lipsum`` global, refused past MAX_WALK words (it writes them in Python)."""
    if _is_int(n) and _is_int(max) and n * max > MAX_WALK:
        raise _refuse("lorem ipsum of that many words", n * max, MAX_WALK)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# --- filters ----------------------------------------------------------------------------

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
    if _is_int(a["width"]):
        check_text(a["width"])


def _guard_indent(a: dict[str, Any]) -> None:
    # as jinja2's do_indent pads: the first line only with first=, blank lines only
    # with blank=
    text, width = str(a["s"]), a["width"]
    pad = width if _is_int(width) else len(str(width))
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
    check_text(_replaced_size(str(a["s"]), str(a["old"]), str(a["new"]), a["count"]))


def _guard_wordwrap(a: dict[str, Any]) -> None:
    if a["wrapstring"] is not None:
        check_text(len(str(a["s"])) * (1 + len(str(a["wrapstring"]))))


def _guard_batch(a: dict[str, Any]) -> None:
    if a["fill_with"] is not None and _is_int(a["linecount"]):
        check_items(a["linecount"])


def _guard_slice(a: dict[str, Any]) -> None:
    if _is_int(a["slices"]):
        check_items(a["slices"])


def _guard_sum(a: dict[str, Any]) -> None:
    iterable = a["iterable"]
    if isinstance(a["start"], _SEQUENCES) and isinstance(iterable, (list, tuple)):
        total = sum(len(item) for item in iterable if isinstance(item, _SEQUENCES))
        if total * len(iterable) > _MAX_COPIES:
            raise _refuse("a sum copying that many items", total * len(iterable), _MAX_COPIES)


def _guard_tojson(a: dict[str, Any]) -> None:
    indent = a["indent"]
    if indent is not None:
        # json.dumps builds the indent string first, then indents every line by up to
        # depth times it
        pad = indent if _is_int(indent) else len(str(indent))
        check_text(pad)
        items, chars, depth = text_shape(a["value"])
        check_text(chars + items * (max(pad, 0) * depth + 2))


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

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        step()
        if walking and len(args) > value_index:
            value = args[value_index]
            if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_WALK:
                raise _refuse("a walk over that many items", len(value), MAX_WALK)
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
