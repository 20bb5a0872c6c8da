"""A small GBNF recogniser: the test oracle for the tool grammars' languages.

It parses the GBNF subset the tool grammars use and says which texts a grammar accepts, so
"the grammar forces a valid call" is tested on real texts, not on the grammar's wording.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any


class Gbnf:
    """Parses the GBNF subset the tool grammars use and tells whether a text matches.

    Memoised "all end positions of rule R from position p" matching: exact for any
    grammar without left recursion, which llama.cpp refuses anyway.
    """

    def __init__(self, text: str) -> None:
        self.rules: dict[str, Any] = {}
        for line in text.splitlines():
            if line.strip():
                name, body = line.split(" ::= ", 1)
                self.src, self.pos = body, 0
                self.rules[name.strip()] = self._alt()
                assert self.pos == len(self.src), f"unparsed rest in {line!r}"

    # parsing
    def _skip(self) -> None:
        while self.pos < len(self.src) and self.src[self.pos] == " ":
            self.pos += 1

    def _alt(self) -> Any:
        options = [self._seq()]
        while self.pos < len(self.src) and self.src[self.pos] == "|":
            self.pos += 1
            options.append(self._seq())
        return ("alt", options)

    def _seq(self) -> Any:
        items = []
        while True:
            self._skip()
            if self.pos >= len(self.src) or self.src[self.pos] in "|)":
                return ("seq", items)
            items.append(self._postfix(self._atom()))

    def _char(self) -> str:
        char = self.src[self.pos]
        if char != "\\":
            self.pos += 1
            return char
        kind = self.src[self.pos + 1]
        sizes = {"x": 2, "u": 4, "U": 8}
        if kind in sizes:
            digits = self.src[self.pos + 2 : self.pos + 2 + sizes[kind]]
            self.pos += 2 + sizes[kind]
            return chr(int(digits, 16))
        self.pos += 2
        return {"n": "\n", "t": "\t", "r": "\r"}.get(kind, kind)

    def _atom(self) -> Any:
        char = self.src[self.pos]
        if char == '"':
            self.pos += 1
            out = []
            while self.src[self.pos] != '"':
                out.append(self._char())
            self.pos += 1
            return ("lit", "".join(out))
        if char == "[":
            self.pos += 1
            negated = self.src[self.pos] == "^"
            self.pos += negated
            ranges = []
            while self.src[self.pos] != "]":
                low = self._char()
                high = low
                if self.src[self.pos] == "-" and self.src[self.pos + 1] != "]":
                    self.pos += 1
                    high = self._char()
                ranges.append((low, high))
            self.pos += 1
            return ("cls", negated, ranges)
        if char == "(":
            self.pos += 1
            inner = self._alt()
            assert self.src[self.pos] == ")"
            self.pos += 1
            return inner
        start = self.pos
        while self.pos < len(self.src) and (
            self.src[self.pos].isalnum() or self.src[self.pos] == "-"
        ):
            self.pos += 1
        assert self.pos > start, f"cannot parse at {self.src[start:]!r}"
        return ("ref", self.src[start : self.pos])

    def _postfix(self, atom: Any) -> Any:
        if self.pos >= len(self.src):
            return atom
        char = self.src[self.pos]
        bounds = {"*": (0, None), "+": (1, None), "?": (0, 1)}
        if char in bounds:
            self.pos += 1
            return ("rep", atom, *bounds[char])
        if char == "{":
            end = self.src.index("}", self.pos)
            spec = self.src[self.pos + 1 : end]
            self.pos = end + 1
            low, _, high = spec.partition(",")
            top = int(low) if "," not in spec else (int(high) if high else None)
            return ("rep", atom, int(low), top)
        return atom

    # matching
    def accepts(self, text: str) -> bool:
        self.text, self.memo = text, {}
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            return len(text) in self._ends(("ref", "root"), 0)
        finally:
            sys.setrecursionlimit(limit)

    def _ends(self, node: Any, pos: int) -> frozenset[int]:
        key = (id(node), pos)
        if key not in self.memo:
            self.memo[key] = frozenset(self._match(node, pos))
        return self.memo[key]  # type: ignore[no-any-return]

    def _match(self, node: Any, pos: int) -> set[int]:
        kind = node[0]
        if kind == "lit":
            return {pos + len(node[1])} if self.text.startswith(node[1], pos) else set()
        if kind == "cls":
            if pos >= len(self.text):
                return set()
            char = self.text[pos]
            inside = any(low <= char <= high for low, high in node[2])
            return {pos + 1} if inside != node[1] else set()
        if kind == "ref":
            return set(self._ends(self.rules[node[1]], pos))
        if kind == "alt":
            return set().union(*(self._ends(option, pos) for option in node[1]))
        if kind == "seq":
            current = {pos}
            for item in node[1]:
                current = set().union(*(self._ends(item, p) for p in current)) if current else set()
            return current
        _, item, low, high = node
        result = {pos} if low == 0 else set()
        frontier, seen, count = {pos}, {pos}, 0
        while frontier and (high is None or count < high):
            count += 1
            frontier = set().union(*(self._ends(item, p) for p in frontier))
            if high is None:
                frontier -= seen
                seen |= frontier
            if count >= low:
                result |= frontier
        return result


@cache
def _recogniser(grammar: str) -> Gbnf:
    return Gbnf(grammar)


def accepts(grammar: str, text: str) -> bool:
    return _recogniser(grammar).accepts(text)
