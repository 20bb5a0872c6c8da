"""Operators and method calls whose result can dwarf their operands, checked first.

``'a' * 10**9``, ``2 ** 10**9``, ``s.replace('', s)``, ``'x'.center(10**9)``,
``sep.join(items)``: each is sized from its operands and refused past the caps of
``budget`` before Python builds it. The sandbox (``sandbox``) and the
rewritten template (``metering``) call these. No llama.cpp counterpart: a
sandbox limit of ours.
"""

from __future__ import annotations

from typing import Any

from .budget import check_bits, check_items, check_text, is_int
from .formats import check_format, check_printf
from .shape import check_printable

SEQUENCES = (str, bytes, list, tuple)


def check_binop(name: str, left: Any, right: Any) -> None:
    """Refuse ``left <name> right`` when its result would dwarf the caps."""
    if name == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, SEQUENCES) and isinstance(count, int):
                size = len(sequence) * max(count, 0)
                if isinstance(sequence, (str, bytes)):
                    check_text(size)
                else:
                    # the copies share their items; printing them is checked when it
                    # happens (check_printable)
                    check_items(size)
        if is_int(left) and is_int(right):
            check_bits(left.bit_length() + right.bit_length())
    elif name == "**":
        if is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
            check_bits(left.bit_length() * right)
    elif name == "%":
        if isinstance(left, (str, bytes)):
            check_printf(left, right)
    elif name == "+" and isinstance(left, SEQUENCES) and type(left) is type(right):
        if isinstance(left, (str, bytes)):
            check_text(len(left) + len(right))
        else:
            check_items(len(left) + len(right))


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


def replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """The length of ``text.replace(old, new, count)``; 0 when the call would fail."""
    operands = (text, old, new)
    if not (
        all(isinstance(v, str) for v in operands) or all(isinstance(v, bytes) for v in operands)
    ):
        return 0  # the call fails on its own; nothing to multiply
    found = text.count(old) if old else len(text) + 1
    if is_int(count) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def check_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call of ``owner.name`` (a str, bytes or int method) that would build too much."""
    if isinstance(owner, (str, bytes)):
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _arg(args, kwargs, 0, "width")
            if is_int(width):
                check_text(width)
        elif name == "expandtabs":
            tabsize = _arg(args, kwargs, 0, "tabsize")
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            if is_int(tabsize):
                check_text(len(owner) + tabs * max(tabsize, 0))
        elif name == "replace":
            check_text(
                replaced_size(
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
        if is_int(length):
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
