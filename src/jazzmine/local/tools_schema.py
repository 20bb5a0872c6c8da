"""The part of JSON Schema that tool parameters use: its checks and a validator.

The grammar side is ``tools_gbnf``. Both cover the same subset, so a reply the grammar
allows also validates:

* ``type`` (one or a list): object, array, string, number, integer, boolean, null;
  ``nullable: true`` (OpenAPI's spelling) adds null.
* ``enum`` and ``const`` (the grammar emits each value's compact JSON).
* objects: ``properties`` in their declared order, ``required``; once ``properties`` is
  given, ``additionalProperties`` is false unless set (the grammar never writes extra
  properties, even when they are allowed). An object schema without ``properties`` is
  any object.
* arrays: ``items``, ``minItems``, ``maxItems``; strings: ``minLength``, ``maxLength``.
* ``anyOf`` and ``oneOf``, both read as "any of" (a grammar cannot count matches).
* integers and numbers with ``minimum`` >= 0 get no minus sign in the grammar.

Checked by the validator only (a grammar cannot express them): ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``, ``pattern``
(Python's ``re``), ``uniqueItems``. Any other keyword that shapes a value (``$ref``,
``allOf``, ``not``, ``if``, ``patternProperties``, ``prefixItems``...) makes that
sub-schema "any JSON value" in the grammar and is not checked; annotations such as
``description``, ``title``, ``default``, ``examples`` and ``format`` are ignored.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

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
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            return f"{where}[{key!r}] must be a non-negative integer"
    for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
        if schema.get(low, 0) > schema.get(high, schema.get(low, 0)):
            return f"{where}: {low} is more than {high}"
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


# ---------- validation ----------


def validate(value: Any, schema: Any, path: str = "$") -> list[str]:
    """Where ``value`` (parsed JSON) breaks ``schema``: readable messages, empty if valid."""
    if schema is False:
        return [f"{path}: no value is allowed here"]
    if not isinstance(schema, dict):
        return []
    if UNSUPPORTED & schema.keys():
        return []
    errors: list[str] = []
    if value is None and schema.get("nullable") is True:
        return []
    if "const" in schema and not _same(value, schema["const"]):
        return [f"{path}: must be {compact(schema['const'])}"]
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        allowed = ", ".join(compact(option) for option in schema["enum"])
        return [f"{path}: must be one of {allowed}"]
    subs = schema.get("anyOf", []) + schema.get("oneOf", [])
    if subs:
        if all(validate(value, merged(schema, sub), path) for sub in subs):
            return [f"{path}: matches none of the allowed schemas"]
        return []
    types = types_of(schema)
    if types and not any(_is_type(value, kind) for kind in types):
        return [f"{path}: must be {' or '.join(types)}, got {_json_type(value)}"]
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    elif isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    return errors


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, but 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    return _json_type(value) == kind or (kind == "number" and _json_type(value) == "integer")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if re.search(pattern, value) is None:
                errors.append(f"{path}: does not match {pattern!r}")
        except re.error:
            pass  # an ECMA regex Python cannot read: not checked (documented)
    return errors


def _number_errors(value: float, schema: dict[str, Any], path: str) -> list[str]:
    errors = []

    def bound(key: str) -> float | None:
        v = schema.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    low, high = bound("minimum"), bound("maximum")
    ex_low, ex_high = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    # draft 4 spelled exclusivity as booleans beside minimum/maximum
    if schema.get("exclusiveMinimum") is True:
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True:
        ex_high, high = high, None
    if low is not None and value < low:
        errors.append(f"{path}: less than {low}")
    if high is not None and value > high:
        errors.append(f"{path}: more than {high}")
    if ex_low is not None and value <= ex_low:
        errors.append(f"{path}: not more than {ex_low}")
    if ex_high is not None and value >= ex_high:
        errors.append(f"{path}: not less than {ex_high}")
    step = bound("multipleOf")
    if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
        errors.append(f"{path}: not a multiple of {step}")
    return errors


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if schema.get("uniqueItems") is True:
        for i, item in enumerate(value):
            if any(_same(item, other) for other in value[:i]):
                errors.append(f"{path}[{i}]: repeats an earlier item")
                break
    items = schema.get("items")
    if isinstance(items, (dict, bool)):
        for i, item in enumerate(value):
            errors += validate(item, items, f"{path}[{i}]")
    return errors


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    properties: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}: missing required property {key!r}")
    extra: Any = schema.get("additionalProperties", "properties" not in schema)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            errors += validate(item, properties[key], where)
        elif extra is False and key not in schema.get("required", []):
            errors.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            errors += validate(item, extra, where)
    return errors
