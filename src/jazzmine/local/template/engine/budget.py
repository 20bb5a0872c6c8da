"""Bounds on the work one chat-template rendering may do: the counters and the limits.

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

This module holds the caps, the per-rendering budget and the size checks everything
else calls; the checks themselves are spread by what they look at: a value's printed
size (``shape``), format strings (``formats``), operators and method
calls (``operators``), filters (``filters``), output
(``output``), and the loops and operators rewritten to reach them
(``metering``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2.exceptions import TemplateError

from ...errors import DeadlineExceeded
from .owned import callers_data

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


class Budget:
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
_budget: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


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
    """``compiled.render(context)`` with a fresh budget under the current deadline, and
    the lists of ``context`` kept from the template's changes (``owned``)."""
    token = _budget.set(Budget(_deadline.get()))
    try:
        with callers_data(context):
            return compiled.render(context)
    finally:
        _budget.reset(token)


def current_budget() -> Budget | None:
    """The budget of the rendering in progress; None outside one (jinja2 compiling)."""
    return _budget.get()


def step() -> None:
    """Count a step of the rendering in progress: past its deadline or budget, raise.

    Outside a rendering (jinja2 folding constants while compiling) nothing is counted.
    """
    budget = _budget.get()
    if budget is not None:
        budget.step()


def refuse(what: str, size: int, limit: int) -> TemplateLimitError:
    """The error for building ``what`` of ``size`` past ``limit``, to be raised."""
    return TemplateLimitError(f"chat template would build {what}: {size} (limit {limit})")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int that sizes can be computed from (bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_text(size: int) -> None:
    limit = MAX_TEXT if _budget.get() is not None else _FOLD_TEXT
    if size > limit:
        raise refuse("a string of that many characters", size, limit)


def check_items(size: int) -> None:
    limit = MAX_ITEMS if _budget.get() is not None else _FOLD_ITEMS
    if size > limit:
        raise refuse("a list of that many items", size, limit)


def check_bits(bits: int) -> None:
    limit = MAX_INT_BITS if _budget.get() is not None else _FOLD_INT_BITS
    if bits > limit:
        raise refuse("an integer of that many bits", bits, limit)


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
