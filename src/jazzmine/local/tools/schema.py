"""The part of JSON Schema that tool parameters use: its checks and a validator.

The grammar side is ``gbnf``. Both cover the same subset, so a reply the grammar
allows also validates:

* ``type`` (one or a list): object, array, string, number, integer, boolean, null;
  ``nullable: true`` (OpenAPI's spelling) adds null.
* ``enum`` and ``const`` (the grammar emits each value's compact JSON).
* objects: ``properties`` in their declared order, ``required``; once ``properties`` is
  given, ``additionalProperties`` is false unless set (the grammar never writes extra
  properties, even when they are allowed). An object schema without ``properties`` is
  any object.
* arrays: ``items``, ``minItems``, ``maxItems``; strings: ``minLength``, ``maxLength``
  (the grammar writes bounds up to ``gbnf.MAX_GRAMMAR_REPEAT``).
* ``anyOf`` and ``oneOf``, both read as "any of" (a grammar cannot count matches).
* integers and numbers with ``minimum`` >= 0 get no minus sign in the grammar.

Checked by the validator only (a grammar cannot express them): ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf`` (exactly, on
the numbers' decimal text), ``pattern`` (ECMA-262, matched in linear time by
``regex``; a pattern that needs backtracking is refused), ``uniqueItems``. Any
other keyword that shapes a value (``$ref``, ``allOf``, ``not``, ``if``,
``patternProperties``, ``prefixItems``...) makes that sub-schema "any JSON value" in the
grammar and is not checked; annotations such as ``description``, ``title``,
``default``, ``examples`` and ``format`` are ignored.

The work is bounded before it starts: ``check_plain`` refuses a caller's schema of more
than ``MAX_SCHEMA_VALUES`` values (a part shared by reference counted each time it is
reached, as a copy, a template and the validator see it) or nesting deeper than
``MAX_JSON_DEPTH``; the validator (``validate.validate``) stops at the call's deadline.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .regex import PatternError, compile_pattern

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# Keywords that change what a value may be and that this subset does not handle.
UNSUPPORTED = frozenset(
    {
        "$ref",
        "$dynamicRef",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "prefixItems",
        "contains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "minProperties",
        "maxProperties",
    }
)
MAX_DEPTH = 32
# A caller's schema as JSON: values (every dict, list and scalar, a shared one each time
# it is reached) and nesting of dicts and lists.
MAX_SCHEMA_VALUES = 20_000
MAX_JSON_DEPTH = 100
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def check_plain(value: Any, where: str = "schema") -> str | None:
    """What makes ``value`` too big or too deep to copy, print or check, or None.

    Iterative and bounded: it stops at the first value past the limits, so a schema that
    shares one sub-schema at every level (``{"anyOf": [s, s]}`` n times: 2**n values when
    copied or printed) or contains itself is refused at once, without being expanded.
    """
    count = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        count += 1
        if count > MAX_SCHEMA_VALUES:
            return (
                f"{where} holds more than {MAX_SCHEMA_VALUES} values (a part used in "
                "several places counts each time; a schema that contains itself never ends)"
            )
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= MAX_JSON_DEPTH:
            return f"{where} nests deeper than {MAX_JSON_DEPTH} levels of dicts and lists"
        pending.extend((child, depth + 1) for child in children)
    return None


def check_schema(schema: Any, where: str = "schema", depth: int = 0) -> str | None:
    """What is wrong with a schema's structure, or None: the shapes the grammar and the
    validator rely on (a ``properties`` dict of schemas, a ``required`` list of names, a
    non-empty ``enum`` list, known ``type`` names)."""
    if isinstance(schema, bool):
        return None if schema else f"{where} is false, which no value satisfies"
    if not isinstance(schema, dict):
        return f"{where} must be a dict, got {type(schema).__name__}"
    if depth > MAX_DEPTH:
        return f"{where} nests deeper than {MAX_DEPTH} levels"
    types = schema.get("type")
    for name in [types] if isinstance(types, str) else types if isinstance(types, list) else []:
        if name not in JSON_TYPES:
            return f"{where} has unknown type {name!r}"
    if types is not None and not isinstance(types, (str, list)):
        return f"{where}['type'] must be a str or a list"
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"{where}['enum'] must be a non-empty list"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}['properties'] must be a dict"
    for key, sub in properties.items():
        problem = check_schema(sub, f"{where}['properties'][{key!r}]", depth + 1)
        if problem:
            return problem
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"{where}['required'] must be a list of property names"
    for key in ("items", "additionalProperties"):
        if key in schema and not isinstance(schema[key], bool):
            problem = check_schema(schema[key], f"{where}[{key!r}]", depth + 1)
            if problem:
                return problem
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = schema[key]
            if not isinstance(options, list) or not options:
                return f"{where}[{key!r}] must be a non-empty list"
            for index, sub in enumerate(options):
                problem = check_schema(sub, f"{where}[{key!r}][{index}]", depth + 1)
                if problem:
                    return problem
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        value = schema.get(key)
        if key in schema and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{where}[{key!r}] must be a non-negative integer"
    for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
        if schema.get(low, 0) > schema.get(high, schema.get(low, 0)):
            return f"{where}: {low} is more than {high}"
    return _check_values(schema, where)


def _check_values(schema: dict[str, Any], where: str) -> str | None:
    """The numbers and the pattern the validator uses: finite numbers, a positive
    ``multipleOf``, a pattern ``regex`` can match in linear time."""
    for key in _NUMERIC:
        value = schema.get(key)
        if value is None or (isinstance(value, bool) and key.startswith("exclusive")):
            continue  # draft 4's exclusiveMinimum: true
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{where}[{key!r}] must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"{where}[{key!r}] must be a finite number, got {value!r}"
        if key == "multipleOf" and value <= 0:
            return f"{where}['multipleOf'] must be more than 0, got {value!r}"
    pattern = schema.get("pattern")
    if pattern is not None and not UNSUPPORTED & schema.keys():
        if not isinstance(pattern, str):
            return f"{where}['pattern'] must be a str, got {type(pattern).__name__}"
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            return f"{where}['pattern']: {exc}"
    return None


def compact(value: Any) -> str:
    """The JSON text a grammar emits for a fixed value (one spelling of it)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def types_of(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in dict.fromkeys(kind) if k in JSON_TYPES]
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def merged(parent: dict[str, Any], sub: Any) -> Any:
    """An anyOf branch sees its parent's other keywords (``{"type": "object", "anyOf":
    [{"required": ["a"]}, ...]}`` is common)."""
    if not isinstance(sub, dict):
        return sub
    base = {k: v for k, v in parent.items() if k not in ("anyOf", "oneOf")}
    return {**base, **sub}
