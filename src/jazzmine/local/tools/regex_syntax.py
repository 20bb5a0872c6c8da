"""ECMA-262 regular expressions as JSON Schema's ``pattern`` uses them: the parser.

``parse_pattern`` reads a pattern into a small tree (``CharSet``, ``Assert``, ``Cat``,
``Alt``, ``Rep``) that ``regex`` compiles to an automaton; what the automaton
cannot run, or what is not ECMA-262, is a ``PatternError`` here. ECMA's meanings are
kept where Python's differ: ``\\d`` and ``\\w`` are ASCII, ``$`` is the end of the text
(not before a final newline), ``[]`` matches nothing and ``[^]`` anything, and a ``{``
that does not make a quantifier is an ordinary character (Annex B).
"""

from __future__ import annotations

from dataclasses import dataclass

# Groups nest at most this deep (the parser recurses per group).
MAX_NESTING = 48

Ranges = tuple[tuple[int, int], ...]

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
_LINE_ENDS: Ranges = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
_CLASS_ESCAPES = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_CONTROL_ESCAPES = {"t": 9, "n": 10, "v": 11, "f": 12, "r": 13}


class PatternError(ValueError):
    """A pattern this matcher refuses: malformed, too large, or needing backtracking."""


@dataclass(frozen=True)
class CharSet:
    """A set of characters: the union of ``parts``, each ranges or their complement;
    ``negated`` takes the complement of that union (``[^\\da-f]``)."""

    parts: tuple[tuple[Ranges, bool], ...]
    negated: bool = False

    def has(self, code: int) -> bool:
        found = any(
            any(low <= code <= high for low, high in ranges) != outside
            for ranges, outside in self.parts
        )
        return found != self.negated

    @property
    def single(self) -> int | None:
        """The one character this set is, if it is one."""
        if self.negated or len(self.parts) != 1:
            return None
        ranges, outside = self.parts[0]
        if outside or len(ranges) != 1 or ranges[0][0] != ranges[0][1]:
            return None
        return ranges[0][0]


def _literal(code: int) -> CharSet:
    return CharSet(((((code, code),), False),))


# The parsed pattern.
@dataclass(frozen=True)
class Assert:
    kind: str  # "^", "$", "b" or "B"


@dataclass(frozen=True)
class Cat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    sub: Node
    low: int
    high: int | None


Node = CharSet | Assert | Cat | Alt | Rep


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0

    def fail(self, why: str) -> PatternError:
        return PatternError(f"pattern {self.src!r}: {why} (at character {self.pos})")

    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.src[index] if index < len(self.src) else ""

    def parse(self) -> Node:
        node = self.alternation(0)
        if self.pos < len(self.src):
            raise self.fail("unbalanced ')'")
        return node

    def alternation(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            raise self.fail(f"groups nest deeper than {MAX_NESTING}")
        branches = [self.sequence(depth)]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.sequence(depth))
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def sequence(self, depth: int) -> Node:
        items: list[Node] = []
        while self.pos < len(self.src) and self.peek() not in "|)":
            atom = self.atom(depth)
            quantified = self.quantifier(atom)
            if quantified is not atom and isinstance(atom, Assert):
                raise self.fail("an assertion cannot be repeated")
            items.append(quantified)
        return items[0] if len(items) == 1 else Cat(tuple(items))

    def counted(self) -> tuple[int, int | None, int] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at the position: (low, high, length) or None
        (then ``{`` is an ordinary character, as ECMA's Annex B reads it)."""
        if self.peek() != "{":
            return None
        end = self.src.find("}", self.pos)
        if end < 0:
            return None
        low_text, comma, high_text = self.src[self.pos + 1 : end].partition(",")
        if not low_text.isdigit() or not (high_text.isdigit() or high_text == ""):
            return None
        if not low_text.isascii() or not high_text.isascii():
            return None
        low = int(low_text)
        high = None if comma and not high_text else int(high_text or low_text)
        if high is not None and high < low:
            raise self.fail("numbers out of order in a {} quantifier")
        return low, high, end + 1 - self.pos

    def repeat_here(self) -> tuple[int, int | None, int] | None:
        char = self.peek()
        if char == "*":
            return 0, None, 1
        if char == "+":
            return 1, None, 1
        if char == "?":
            return 0, 1, 1
        return self.counted()

    def quantifier(self, atom: Node) -> Node:
        found = self.repeat_here()
        if found is None:
            return atom
        low, high, length = found
        self.pos += length
        if self.peek() == "?":
            self.pos += 1  # lazy: the same strings match
        if self.repeat_here() is not None:
            raise self.fail("nothing to repeat")
        return Rep(atom, low, high)

    def atom(self, depth: int) -> Node:
        if self.repeat_here() is not None:
            raise self.fail("nothing to repeat")
        char = self.peek()
        self.pos += 1
        if char in ("^", "$"):
            return Assert(char)
        if char == ".":
            return CharSet(((_LINE_ENDS, True),))
        if char == "(":
            return self.group(depth)
        if char == "[":
            return self.char_class()
        if char == "\\":
            return self.escape(in_class=False)
        return _literal(ord(char))

    def group(self, depth: int) -> Node:
        if self.peek() == "?":
            head = self.src[self.pos : self.pos + 3]
            if head.startswith("?:"):
                self.pos += 2
            elif head[:2] in ("?=", "?!") or head in ("?<=", "?<!"):
                raise self.fail("lookahead and lookbehind are not supported")
            elif head.startswith("?<"):
                end = self.src.find(">", self.pos)
                if end < 0:
                    raise self.fail("unterminated group name")
                self.pos = end + 1
            elif head.startswith("?P"):
                raise self.fail("(?P...) is Python's syntax, not ECMA-262: use (?<name>...)")
            else:
                raise self.fail(f"unsupported group {'(' + head!r}")
        node = self.alternation(depth + 1)
        if self.peek() != ")":
            raise self.fail("missing ')'")
        self.pos += 1
        # a group is an atom: (?:\b)? is allowed where \b? is not
        return Cat((node,)) if isinstance(node, Assert) else node

    def char_class(self) -> CharSet:
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        parts: list[tuple[Ranges, bool]] = []
        while self.peek() != "]":
            if not self.peek():
                raise self.fail("missing ']'")
            low = self.class_atom(parts)
            if low is None:
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_atom(parts)
                if high is None:  # [a-\d]: the '-' is a literal (ECMA Annex B)
                    ranges += [(low, low), (0x2D, 0x2D)]
                    continue
                if high < low:
                    raise self.fail("range out of order in a character class")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        self.pos += 1
        parts.append((tuple(ranges), False))
        return CharSet(tuple(parts), negated)

    def class_atom(self, parts: list[tuple[Ranges, bool]]) -> int | None:
        """One class member: its code point, or None for a class escape such as \\d
        (whose characters go into ``parts``)."""
        char = self.peek()
        self.pos += 1
        if char != "\\":
            return ord(char)
        if self.peek() == "b":
            self.pos += 1
            return 8  # inside a class, \\b is a backspace
        if self.peek() == "-":
            self.pos += 1
            return 0x2D
        members = self.escape(in_class=True)
        assert isinstance(members, CharSet)
        single = members.single
        if single is None:
            parts.extend(members.parts)
        return single

    def escape(self, *, in_class: bool) -> Node:
        char = self.peek()
        if not char:
            raise self.fail("the pattern ends with '\\'")
        self.pos += 1
        lower = char.lower()
        if char in "bB" and not in_class:
            return Assert(char)
        if lower in _CLASS_ESCAPES:
            return CharSet(((_CLASS_ESCAPES[lower], char.isupper()),))
        if char in _CONTROL_ESCAPES:
            return _literal(_CONTROL_ESCAPES[char])
        if char == "c":
            letter = self.peek()
            if not (letter.isascii() and letter.isalpha()):
                raise self.fail("\\c must be followed by a letter")
            self.pos += 1
            return _literal(ord(letter) % 32)
        if char == "0" and not self.peek().isdigit():
            return _literal(0)
        if char.isdigit():
            raise self.fail(f"backreferences (\\{char}) and octal escapes are not supported")
        if char == "k":
            raise self.fail("backreferences (\\k<name>) are not supported")
        if char in "pP":
            raise self.fail(f"\\{char}{{...}} (Unicode properties) is not supported")
        if char == "x":
            return _literal(self.hex_digits(2))
        if char == "u":
            return _literal(self.unicode_escape())
        if char.isascii() and char.isalnum():
            raise self.fail(f"\\{char} is not an ECMA-262 escape")
        return _literal(ord(char))  # an escaped symbol stands for itself

    def hex_digits(self, count: int) -> int:
        digits = self.src[self.pos : self.pos + count]
        if len(digits) != count or any(d not in _HEX for d in digits):
            raise self.fail(f"expected {count} hex digits")
        self.pos += count
        return int(digits, 16)

    def unicode_escape(self) -> int:
        if self.peek() == "{":
            end = self.src.find("}", self.pos)
            digits = self.src[self.pos + 1 : end] if end > 0 else ""
            if not digits or len(digits) > 6 or any(d not in _HEX for d in digits):
                raise self.fail("malformed \\u{...} escape")
            self.pos = end + 1
            return min(int(digits, 16), 0x10FFFF)
        code = self.hex_digits(4)
        if 0xD800 <= code < 0xDC00 and self.src[self.pos : self.pos + 2] == "\\u":
            # a surrogate pair written as two escapes is one character in a Python str
            tail = self.src[self.pos + 2 : self.pos + 6]
            if len(tail) == 4 and all(d in _HEX for d in tail):
                low = int(tail, 16)
                if 0xDC00 <= low < 0xE000:
                    self.pos += 6
                    return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        return code


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_pattern(source: str) -> Node:
    """The tree of ``source``; raises ``PatternError``."""
    return _Parser(source).parse()
