"""JSON Schema (the subset of ``schema``) to GBNF, and GBNF helpers.

llama.cpp turns JSON schemas into grammars in C++ (``common/json-schema-to-grammar.cpp``);
a tool call's grammar is built here in Python instead, because the call's markup (which
differs per model family) wraps the arguments and the whole must be one grammar. Which
keywords the grammar enforces and which only the validator checks is listed in
``schema``; ``pattern`` is one the grammar leaves out (any string is written, the
validator then checks it).

A grammar is bounded: at most ``MAX_GRAMMAR_CHARS`` of rules (an ``OptionValueError``
past that: an ``anyOf`` branch repeats its parent's properties, so 200 branches of a
200-property object are 40,000 property rules), length and item bounds written only up
to ``MAX_GRAMMAR_REPEAT`` (llama.cpp expands ``x{0,n}`` into n rules), and building
stops at the call's deadline (``DeadlineExceeded``).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from ..errors import DeadlineExceeded, OptionValueError
from .schema import MAX_DEPTH, UNSUPPORTED, compact, merged, types_of

MAX_GRAMMAR_CHARS = 1_000_000
MAX_GRAMMAR_REPEAT = 1000

# JSON text the grammars share. Whitespace is bounded so that a model cannot loop on it.
PRIMITIVES: dict[str, str] = {
    "ws": '( " " | "\\n" [ \\t]{0,24} )?',
    "json-char": '[^"\\\\\\x00-\\x1F\\x7F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "json-string": '"\\"" json-char* "\\""',
    "json-nat": '"0" | [1-9] [0-9]{0,15}',
    "json-int": '"-"? json-nat',
    "json-frac": '( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "json-number": "json-int json-frac",
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-value": (
        "json-object | json-array | json-string | json-number | json-boolean | json-null"
    ),
    "json-pair": 'json-string ws ":" ws json-value ws',
    "json-object": '"{" ws ( json-pair ( "," ws json-pair )* )? "}"',
    "json-array": '"[" ws ( json-value ws ( "," ws json-value ws )* )? "]"',
}
# which primitive rules each one needs, to emit only those used
_NEEDS: dict[str, tuple[str, ...]] = {
    "json-string": ("json-char",),
    "json-int": ("json-nat",),
    "json-number": ("json-int", "json-frac"),
    "json-value": (
        "json-object",
        "json-array",
        "json-string",
        "json-number",
        "json-boolean",
        "json-null",
    ),
    "json-pair": ("json-string", "ws", "json-value"),
    "json-object": ("ws", "json-pair"),
    "json-array": ("ws", "json-value"),
}


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (llama.cpp's escapes only)."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def gbnf_char(char: str) -> str:
    """One character for a GBNF character class: anything not alphanumeric is escaped."""
    if char.isascii() and char.isalnum():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02X}"
    if code < 0x10000:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def rule_name(hint: str) -> str:
    """A GBNF rule name (letters, digits and '-') from any text."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", hint).strip("-").lower()
    return name or "r"


class Grammar:
    """GBNF rules under construction: schema rules, family rules and the shared JSON ones.

    Rule names are made unique on the way in, so two tools' "city" properties get two
    rules; primitives are emitted only when something refers to them.
    """

    def __init__(self, deadline: float | None = None, *, compact: bool = False) -> None:
        self.rules: dict[str, str] = {}
        # compact: JSON with at most one space between tokens, no new lines or indents
        # (a small model spends a third of a JSON reply's tokens on its indentation)
        self._primitives = {**PRIMITIVES, "ws": '" "?'} if compact else PRIMITIVES
        self._used: set[str] = set()
        self._deadline = deadline
        self._size = 0
        # per base name, the next suffix to try: unique names in constant time
        self._counts: dict[str, int] = {}

    def add(self, hint: str, body: str) -> str:
        """Add a rule named after ``hint`` (made unique); returns its name. Raises
        ``OptionValueError`` past ``MAX_GRAMMAR_CHARS``, ``DeadlineExceeded`` past the
        deadline."""
        base = rule_name(hint)
        name, count = base, self._counts.get(base, 1)
        if count > 1:
            name = f"{base}-{count}"
        while name in self.rules or name in PRIMITIVES:
            count += 1
            name = f"{base}-{count}"
        self._counts[base] = count
        self.rules[name] = body
        self._grew(len(name) + len(body) + 5)
        return name

    def _grew(self, chars: int) -> None:
        self._size += chars
        if self._size > MAX_GRAMMAR_CHARS:
            raise OptionValueError(
                f"the grammar for these tools would be more than {MAX_GRAMMAR_CHARS} "
                "characters: the schemas are too large (an anyOf branch repeats its "
                "parent's properties; fewer branches or properties, or a shared "
                "sub-schema given once, keep it small)"
            )
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DeadlineExceeded

    def use(self, primitive: str) -> str:
        """Refer to a shared JSON rule (``ws``, ``json-string``, ...)."""
        pending = [primitive]
        while pending:
            name = pending.pop()
            if name not in self._used:
                self._used.add(name)
                pending.extend(_NEEDS.get(name, ()))
        return primitive

    def text(self) -> str:
        lines = [f"{name} ::= {body}" for name, body in self.rules.items()]
        primitives = self._primitives
        lines += [f"{name} ::= {primitives[name]}" for name in primitives if name in self._used]
        return "\n".join(lines) + "\n"

    # ----- schemas -----

    def schema(self, schema: Any, hint: str, depth: int = 0) -> str:
        """A GBNF expression (usually a rule name) for JSON text valid against ``schema``."""
        if schema is True or schema == {} or not isinstance(schema, dict) or depth > MAX_DEPTH:
            return self.use("json-value")
        if UNSUPPORTED & schema.keys():
            # documented fallback: the sub-schema becomes "any JSON value"
            return self.use("json-value")
        options: list[str]
        if "const" in schema:
            options = [gbnf_literal(compact(schema["const"]))]
        elif "enum" in schema:
            options = [gbnf_literal(compact(value)) for value in schema["enum"]]
        elif "anyOf" in schema or "oneOf" in schema:
            subs = schema.get("anyOf", []) + schema.get("oneOf", [])
            options = [
                self.schema(merged(schema, sub), f"{hint}-{index}", depth + 1)
                for index, sub in enumerate(subs)
            ]
        else:
            types = types_of(schema)
            if not types:
                return self.use("json-value")
            options = [self._typed(schema, kind, hint, depth) for kind in types]
        if schema.get("nullable") is True:
            options.append(self.use("json-null"))
        if len(options) == 1 and re.fullmatch(r"[a-z0-9-]+", options[0]):
            return options[0]
        return self.add(hint, " | ".join(dict.fromkeys(options)))

    def _typed(self, schema: dict[str, Any], kind: str, hint: str, depth: int) -> str:
        if kind == "string":
            low, high = _repeat(schema.get("minLength", 0), schema.get("maxLength"))
            if not low and high is None:
                return self.use("json-string")
            self.use("json-char")
            count = f"{{{low},}}" if high is None else f"{{{low},{high}}}"
            return self.add(f"{hint}-string", f'"\\"" json-char{count} "\\""')
        if kind in ("integer", "number"):
            natural = _at_least_zero(schema)
            if kind == "integer":
                bounded = _integer_range(schema)
                if bounded is not None:
                    # a small range is listed whole, so a bound the model would break
                    # never gets written (small models overshoot maximums)
                    low, high = bounded
                    values = " | ".join(f'"{value}"' for value in range(low, high + 1))
                    return self.add(f"{hint}-integer", values)
                return self.use("json-nat") if natural else self.use("json-int")
            if natural:
                self.use("json-nat")
                self.use("json-frac")
                return self.add(f"{hint}-number", "json-nat json-frac")
            return self.use("json-number")
        if kind == "boolean":
            return self.use("json-boolean")
        if kind == "null":
            return self.use("json-null")
        if kind == "array":
            return self._array(schema, hint, depth)
        return self._object(schema, hint, depth)

    def _array(self, schema: dict[str, Any], hint: str, depth: int) -> str:
        item = self.schema(schema.get("items", True), f"{hint}-item", depth + 1)
        ws = self.use("ws")
        low, high = _repeat(schema.get("minItems", 0), schema.get("maxItems"))
        if high == 0:
            return self.add(hint, f'"[" {ws} "]"')
        more_low = max(low - 1, 0)
        more = f"{{{more_low},}}" if high is None else f"{{{more_low},{high - 1}}}"
        items = f'{item} {ws} ( "," {ws} {item} {ws} ){more}'
        if low == 0:
            items = f"( {items} )?"
        return self.add(hint, f'"[" {ws} {items} "]"')

    def _object(self, schema: dict[str, Any], hint: str, depth: int) -> str:
        ws = self.use("ws")
        properties: dict[str, Any] = dict(schema.get("properties", {}))
        required = list(dict.fromkeys(schema.get("required", [])))
        for key in required:
            properties.setdefault(key, True)  # required but undescribed: any value
        if "properties" not in schema and not required:
            extra = schema.get("additionalProperties", True)
            if extra is False:
                return self.add(hint, f'"{{" {ws} "}}"')
            if extra is True or extra == {}:
                return self.use("json-object")
            value = self.schema(extra, f"{hint}-value", depth + 1)
            key = self.use("json-string")
            pair = self.add(f"{hint}-pair", f'{key} {ws} ":" {ws} {value} {ws}')
            return self.add(hint, f'"{{" {ws} ( {pair} ( "," {ws} {pair} )* )? "}}"')
        if not properties:
            return self.add(hint, f'"{{" {ws} "}}"')
        names = list(properties)
        pairs = []
        for key in names:
            value = self.schema(properties[key], f"{hint}-{key}", depth + 1)
            literal = gbnf_literal(compact(key))
            pairs.append(self.add(f"{hint}-{key}-kv", f'{literal} {ws} ":" {ws} {value} {ws}'))
        optional = [key not in required for key in names]
        count = len(names)
        # Properties come in declared order; optional ones may be left out.
        # rest[i]: what may follow once a property before i was written, each with its
        # comma; first[i]: a non-empty run starting at i or later, without a comma.
        # Built from the end, in a loop (an object may have thousands of properties),
        # and only the rules referred to: first(0) needs every rest from 1 on, and the
        # firsts up to the first required property.
        rests = [""] * (count + 1)
        for i in range(count - 1, 0, -1):
            tail = f" {rests[i + 1]}" if rests[i + 1] else ""
            one = f'"," {ws} {pairs[i]}'
            body = f"( {one} )?{tail}" if optional[i] else f"{one}{tail}"
            rests[i] = self.add(f"{hint}-rest", body)
        last = 0
        while optional[last] and last + 1 < count:
            last += 1
        firsts = [""] * (count + 1)
        for i in range(last, -1, -1):
            after = rests[i + 1]
            body = f"{pairs[i]} {after}" if after else pairs[i]
            if optional[i] and i + 1 < count:
                body = f"{body} | {firsts[i + 1]}"
            firsts[i] = self.add(f"{hint}-first", body)
        first0 = firsts[0]
        members = f"( {first0} )?" if all(optional) else first0
        return self.add(hint, f'"{{" {ws} {members} "}}"')


def _repeat(low: int, high: int | None) -> tuple[int, int | None]:
    """Length or item bounds as the grammar writes them: past ``MAX_GRAMMAR_REPEAT`` a
    bound is loosened (the validator still holds the reply to the schema's)."""
    if high is not None and high > MAX_GRAMMAR_REPEAT:
        high = None
    return min(low, MAX_GRAMMAR_REPEAT), high


# The largest integer range a grammar lists value by value.
MAX_LISTED_INTEGERS = 1000


def _integer_range(schema: dict[str, Any]) -> tuple[int, int] | None:
    """(lowest, highest) allowed integer when both bounds are given and the range is
    small enough to list; None otherwise (the validator still checks the bounds)."""
    bounds = []
    for key, exclusive, step in (
        ("minimum", "exclusiveMinimum", 1),
        ("maximum", "exclusiveMaximum", -1),
    ):
        value, strict = schema.get(key), schema.get(exclusive)
        if isinstance(strict, (int, float)) and not isinstance(strict, bool):
            value, strict = strict, True  # draft 6+: the exclusive bound is a number
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        edge = math.ceil(value) if step == 1 else math.floor(value)
        if strict is True and edge == value:
            edge += step
        bounds.append(int(edge))
    low, high = bounds
    if high < low or high - low >= MAX_LISTED_INTEGERS:
        return None
    return low, high


def _at_least_zero(schema: dict[str, Any]) -> bool:
    low = schema.get("minimum")
    exclusive = schema.get("exclusiveMinimum")
    numbers = [
        v for v in (low, exclusive) if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return any(v >= 0 for v in numbers)
