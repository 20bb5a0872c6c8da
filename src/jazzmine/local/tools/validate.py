"""Validating parsed JSON against the JSON Schema subset of ``schema``.

``validate`` returns readable messages.
Its cost is bounded by the value's size times the schema's (the schema was bounded by
``schema.check_plain`` and every pattern compiles to a linear-time matcher), and
inside ``deadline_scope`` it also stops at the call's deadline, so checking a reply
counts in the call's timeout like the run itself.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..errors import DeadlineExceeded
from .regex import PatternError, compile_pattern
from .schema import UNSUPPORTED, compact, merged, types_of

_DEADLINE: ContextVar[float | None] = ContextVar("jazzmine_tools_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Validation inside stops at ``deadline`` (``DeadlineExceeded``, which the call
    turns into ``LLMTimeoutError``): the reply's checks count in the call's timeout."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _in_time() -> float | None:
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded
    return deadline


def validate(value: Any, schema: Any, path: str = "$") -> list[str]:
    """Where ``value`` (parsed JSON) breaks ``schema``: readable messages, empty if valid.
    Inside ``deadline_scope``, raises ``DeadlineExceeded`` past the deadline."""
    _in_time()
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


def _key(value: Any) -> Any:
    """A hashable form equal for values ``_same`` calls equal (a set finds repeats in
    linear time, where comparing every pair is quadratic)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", value)  # 1 == 1.0 and they hash alike
    if isinstance(value, list):
        return ("array", tuple(_key(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _key(v)) for k, v in value.items()))
    return ("other", id(value))


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
            matched = compile_pattern(pattern).search(value, _in_time())
        except PatternError:
            matched = True  # refused when the tools were checked; not reached from there
        if not matched:
            errors.append(f"{path}: does not match {pattern!r}")
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
    if step is not None and step > 0 and not _multiple_of(value, step):
        errors.append(f"{path}: not a multiple of {step}")
    return errors


def _multiple_of(value: float, step: float) -> bool:
    """Exactly, on the numbers as decimals (0.3 is a multiple of 0.1, 1e308 of 1e-320):
    a float quotient would overflow or round."""
    if isinstance(value, float) and not math.isfinite(value):
        return False  # NaN or Infinity (Python's json reads them); step is finite
    quotient = Fraction(Decimal(repr(value))) / Fraction(Decimal(repr(step)))
    return quotient.denominator == 1


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if schema.get("uniqueItems") is True:
        seen: set[Any] = set()
        for i, item in enumerate(value):
            try:
                key = _key(item)
            except RecursionError:
                errors.append(f"{path}[{i}]: nests too deep to compare")
                break
            if key in seen:
                errors.append(f"{path}[{i}]: repeats an earlier item")
                break
            seen.add(key)
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
