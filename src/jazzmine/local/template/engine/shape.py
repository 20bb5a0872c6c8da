"""How much text a value turns into when printed, walked without building it.

A template's value can hold itself many times over; Python's str(), repr() and
json.dumps cannot be stopped once they start, so the size of what they would build is
counted first and refused past the caps of ``budget``. No llama.cpp
counterpart: a sandbox limit of ours.
"""

from __future__ import annotations

from typing import Any

from jinja2.utils import Namespace

from .budget import MAX_TEXT, MAX_WALK, refuse

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
            raise refuse("text from a value of that many items", items, MAX_WALK)
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
            raise refuse("text of that many characters", chars, MAX_TEXT)
        level = below
    return items, chars, depth - 1


def check_printable(*values: Any) -> None:
    """Refuse values whose text (str, repr or JSON) would be too long to build."""
    for value in values:
        if isinstance(value, _CONTAINERS):
            text_shape(value)
