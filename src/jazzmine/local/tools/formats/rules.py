"""GBNF for a learnt call format: the call section as the template writes it, with
arguments that fit each tool's schema.

JSON arguments are the schema's grammar (``gbnf.Grammar.schema``). Parameters are
written in the schema's property order, the required ones always, the others
optionally; a string value is raw text that never contains its closing markup (an
``enum`` of strings: one of them), any other value is JSON for its schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..gbnf import Grammar, gbnf_literal
from ..spec import Tool
from .read import _is_string
from .shape import ARGS, CALL_ID, INDEX, NAME, CallFormat, Params

# avoid(g, word, hint): a rule for text that never contains word (grammar.avoid)
Avoid = Callable[[Grammar, str, str], str]


def _lit(text: str) -> str:
    return gbnf_literal(text) if text else ""


def section_rule(
    g: Grammar,
    fmt: CallFormat,
    tools: Sequence[Tool],
    parallel: bool,
    avoid: Avoid,
    *,
    from_trigger: bool = False,
) -> str:
    """The rule for a call section; ``from_trigger``: starting at the trigger (a lazy
    grammar is applied from there, so whitespace before it is not part of it)."""
    opening = fmt.open.lstrip() if from_trigger else fmt.open
    strip_first = from_trigger and not opening

    def calls(strip: bool, index: str) -> str:
        bodies = [
            " ".join(p for p in _call(g, fmt, tool, avoid, strip, index) if p) for tool in tools
        ]
        named = [g.add(f"call-{tool.name}", body) for tool, body in zip(tools, bodies, strict=True)]
        return named[0] if len(named) == 1 else g.add("call", " | ".join(named))

    one = calls(False, "[1-9] [0-9]?")
    # the first call is number 0 where calls are numbered
    numbered = any(kind == INDEX for kind, _ in fmt.call)
    first = calls(strip_first, '"0"') if strip_first or numbered else one
    body = f"{first} ( {_lit(fmt.separator)} {one} )*" if parallel else first
    return g.add("calls", " ".join(p for p in (_lit(opening), body, _lit(fmt.close)) if p))


def _call(
    g: Grammar, fmt: CallFormat, tool: Tool, avoid: Avoid, strip: bool, index: str
) -> list[str]:
    parts: list[str] = []
    for kind, value in fmt.call:
        if kind == "lit":
            text = value.lstrip() if strip and not parts else value
            parts.append(_lit(text))
            continue
        if kind == NAME:
            parts.append(gbnf_literal(tool.name))
        elif kind == CALL_ID:
            parts.append("[a-zA-Z0-9]{9}")
        elif kind == INDEX:
            parts.append(index)
        elif kind == ARGS:
            if fmt.params is None:
                parts.append(g.schema(tool.schema, f"{tool.name}-args"))
            else:
                parts.append(_params(g, fmt.params, tool, avoid))
        strip = False
    return parts


def _params(g: Grammar, p: Params, tool: Tool, avoid: Avoid) -> str:
    schema: Any = tool.schema
    properties = schema.get("properties") or {} if isinstance(schema, dict) else {}
    required = set(schema.get("required") or []) if isinstance(schema, dict) else set()
    units: list[tuple[str, bool]] = []
    for key, sub in properties.items():
        closing = p.string_end(key)
        if _is_string(sub) and closing.strip():
            enum = sub.get("enum")
            if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
                value = g.add(f"{tool.name}-{key}-enum", " | ".join(map(gbnf_literal, enum)))
            else:
                value = avoid(g, closing.strip(), f"{tool.name}-{key}-text")
            unit = f"{gbnf_literal(p.key_open + key + p.string_open)} {value} {_lit(closing)}"
        else:
            value = g.schema(sub, f"{tool.name}-{key}")
            unit = f"{gbnf_literal(p.key_open + key + p.value_open)} {value}"
            unit += f" {_lit(p.value_end(key))}"
        units.append((unit, key in required))
    if not units:
        return '""'
    parts: list[str] = []
    for index, (unit, needed) in enumerate(units):
        item = f"{_lit(p.separator)} {unit}" if index and p.separator else unit
        parts.append(item if needed else f"( {item} )?")
    return g.add(f"{tool.name}-params", " ".join(parts))
