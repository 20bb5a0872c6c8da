"""Which lists a template may change: the ones it built, never the caller's.

llama.cpp's engine (``common/jinja/value.cpp``) gives arrays two methods that change
them, ``append`` and ``pop``, and templates use them on lists of their own (Kimi K2
queues its tool-call ids in one). jinja2's immutable sandbox refuses every change to a
list; here a list may be changed when it is not reachable from what the caller handed
the rendering (``messages``, ``tools``, the other context values): those stay as given,
so that a template cannot rewrite the conversation the next rendering of the same
messages sees. A list counts as the caller's by identity: each list and dict reachable
from the context is recorded when the rendering starts, and stays alive, so no list the
template builds can share its id.

No dict method changes a dict in llama.cpp's engine, so none is opened here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# the methods of llama.cpp's arrays that change them
LIST_CHANGES = frozenset({"append", "pop"})

# the ids of the lists and dicts the caller handed the rendering in progress; None
# outside a rendering (jinja2 folding constants while compiling), when nothing may change
_callers: ContextVar[frozenset[int] | None] = ContextVar("template_callers", default=None)


@contextmanager
def callers_data(context: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, the lists and dicts reachable from ``context`` are the caller's."""
    token = _callers.set(frozenset(_reachable(context)))
    try:
        yield
    finally:
        _callers.reset(token)


def may_change(obj: Any, attr: str) -> bool:
    """Whether a template may use ``obj.attr``, a method that changes a list, on ``obj``:
    only on a plain list it built itself, in a rendering."""
    if type(obj) is not list or attr not in LIST_CHANGES:
        return False
    callers = _callers.get()
    return callers is not None and id(obj) not in callers


def _reachable(root: Any) -> set[int]:
    """The ids of every list, tuple and dict reachable from ``root`` (itself included).

    Walked through the base types' own methods: a capability probe's dicts and lists
    record every read through theirs, and this walk is no read of the template's.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        if isinstance(value, dict):
            stack.extend(dict.values(value))
        elif isinstance(value, list):
            stack.extend(list.copy(value))
        elif isinstance(value, tuple):
            stack.extend(tuple.__iter__(value))
        else:
            continue
        seen.add(id(value))
    return seen
