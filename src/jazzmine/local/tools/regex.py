"""JSON Schema ``pattern``: ECMA-262 regular expressions, matched in linear time.

A tool's schema comes from the caller and the string it is matched against from the
model, so neither can be trusted to be kind to a backtracking engine: Python's ``re``
takes exponential time on ``^(a+)+$`` against ``"a" * 40 + "!"``. Here a pattern is
compiled to an automaton (Thompson's construction) and run over the text one character
at a time, every thread at once (Pike's simulation; only match or no match is needed, so
no captures): time is at most the text's length times the automaton's size, and the
automaton is at most ``MAX_STATES`` states (counted repetitions are expanded).

What JSON Schema patterns use is supported: literals, ``.``, classes (``[a-z]``,
``[^...]``, ``\\d \\w \\s`` and their negations, ECMA meanings: ASCII digits and word
characters), ``^`` and ``$`` (whole text), ``\\b`` and ``\\B``, groups (``(...)``,
``(?:...)``, ``(?<name>...)``), ``|``, and ``* + ? {n} {n,} {n,m}`` greedy or lazy (the
same for matching). What needs backtracking or is not ECMA-262 is refused with
``PatternError``: backreferences (``\\1``, ``\\k<name>``), lookahead and lookbehind,
``\\p{...}``, and escapes of letters ECMA does not define (Python's ``\\A``, ``\\Z``).
As in JSON Schema, a pattern matches anywhere in the text unless anchored.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from ..errors import DeadlineExceeded
from .regex_syntax import Alt, Assert, Cat, CharSet, Node, PatternError, parse_pattern

__all__ = ["MAX_STATES", "Pattern", "PatternError", "compile_pattern"]

MAX_STATES = 2000
# Distinct (state set, context, character) steps remembered per search.
_CACHE_LIMIT = 4096


def _size(node: Node) -> int:
    """States the node compiles to (counted repetitions expanded)."""
    if isinstance(node, (CharSet, Assert)):
        return 1
    if isinstance(node, Cat):
        return sum(_size(n) for n in node.items)
    if isinstance(node, Alt):
        return sum(_size(n) + 2 for n in node.items)
    one = _size(node.sub)
    if node.high is None:
        return node.low * one + one + 2
    return node.low * one + (node.high - node.low) * (one + 1)


# The automaton, one instruction per state: SET consumes a character in ``members``;
# SPLIT goes to ``a`` and ``b``; JMP to ``a``; ASSERT goes on if ``kind`` holds; MATCH.
SET, SPLIT, JMP, ASSERT, MATCH = range(5)


@dataclass
class _Op:
    op: int
    a: int = -1
    b: int = -1
    members: CharSet | None = None
    kind: str = ""


def _emit(node: Node, prog: list[_Op]) -> None:
    if isinstance(node, CharSet):
        prog.append(_Op(SET, len(prog) + 1, members=node))
    elif isinstance(node, Assert):
        prog.append(_Op(ASSERT, kind=node.kind))
    elif isinstance(node, Cat):
        for item in node.items:
            _emit(item, prog)
    elif isinstance(node, Alt):
        jumps = []
        for item in node.items[:-1]:
            split = _Op(SPLIT, len(prog) + 1)
            prog.append(split)
            _emit(item, prog)
            jumps.append(_Op(JMP))
            prog.append(jumps[-1])
            split.b = len(prog)
        _emit(node.items[-1], prog)
        for jump in jumps:
            jump.a = len(prog)
    else:
        for _ in range(node.low):
            _emit(node.sub, prog)
        if node.high is None:
            loop = _Op(SPLIT, len(prog) + 1)
            start = len(prog)
            prog.append(loop)
            _emit(node.sub, prog)
            prog.append(_Op(JMP, start))
            loop.b = len(prog)
            return
        splits = []
        for _ in range(node.high - node.low):
            splits.append(_Op(SPLIT, len(prog) + 1))
            prog.append(splits[-1])
            _emit(node.sub, prog)
        for split in splits:
            split.b = len(prog)


def _is_word(char: str | None) -> bool:
    return char is not None and char.isascii() and (char.isalnum() or char == "_")


class Pattern:
    """A compiled pattern; ``search`` says whether it matches somewhere in a text."""

    def __init__(self, source: str) -> None:
        self.source = source
        tree = parse_pattern(source)
        size = _size(tree)
        if size > MAX_STATES:
            raise PatternError(
                f"pattern {source[:80]!r} is too large to match safely: about {size} "
                f"states, at most {MAX_STATES} (a counted repetition such as {{1000}} "
                "counts in full)"
            )
        self.prog: list[_Op] = []
        _emit(tree, self.prog)
        self.prog.append(_Op(MATCH))

    def _closure(
        self, seeds: frozenset[int], start: bool, before: str | None, after: str | None
    ) -> tuple[bool, list[_Op]]:
        """Every state reachable without a character from ``seeds`` and from the start
        (a search may begin anywhere), given the characters around the position:
        (whether MATCH is reached, the states that consume a character)."""
        prog = self.prog
        seen: set[int] = set()
        stack = [0, *seeds]
        consumers: list[_Op] = []
        boundary = _is_word(before) != _is_word(after)
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op = prog[pc]
            if op.op == MATCH:
                return True, []
            if op.op == SET:
                consumers.append(op)
            elif op.op == SPLIT:
                stack += (op.b, op.a)
            elif op.op == JMP:
                stack.append(op.a)
            elif _holds(op.kind, start, after is None, boundary):
                stack.append(pc + 1)
        return False, consumers

    def search(self, text: str, deadline: float | None = None) -> bool:
        """Whether the pattern matches somewhere in ``text``: linear in its length.
        Raises ``DeadlineExceeded`` past ``deadline`` (checked every 256 characters)."""
        cache: dict[tuple[frozenset[int], bool, bool, str | None], frozenset[int] | None] = {}
        current: frozenset[int] = frozenset()
        for index in range(len(text) + 1):
            if deadline is not None and index % 256 == 0 and time.monotonic() > deadline:
                raise DeadlineExceeded
            before = text[index - 1] if index else None
            after = text[index] if index < len(text) else None
            key = (current, index == 0, _is_word(before), after)
            if key in cache:
                step = cache[key]
            else:
                matched, consumers = self._closure(current, index == 0, before, after)
                step = None
                if not matched:
                    code = -1 if after is None else ord(after)
                    step = frozenset(
                        op.a for op in consumers if code >= 0 and _has(op.members, code)
                    )
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[key] = step
            if step is None:
                return True
            current = step
        return False


def _has(members: CharSet | None, code: int) -> bool:
    return members is not None and members.has(code)


def _holds(kind: str, start: bool, end: bool, boundary: bool) -> bool:
    if kind == "^":
        return start
    if kind == "$":
        return end
    return boundary if kind == "b" else not boundary


@functools.lru_cache(maxsize=256)
def compile_pattern(source: str) -> Pattern:
    """The compiled pattern (cached); raises ``PatternError``."""
    return Pattern(source)
