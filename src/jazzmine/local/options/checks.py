"""One check per kind of option value: the same at construction and per call.

Each check takes the option's name (for the message) and the value, and returns the
value normalised or raises ``OptionTypeError``/``OptionValueError`` (a TypeError or
ValueError that is also an ``LLMInvalidRequestError``). The table of which option gets
which check is ``options``. What llama.cpp arguments may say is ``args``;
keep_alive's durations are ``durations``.
"""

from __future__ import annotations

import math
import operator
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import OptionTypeError, OptionValueError, lone_surrogate
from ..transports import rpc
from .args import check_placeholders, refuse_flags
from .durations import parse_keep_alive

# llama.cpp reads -n, -c, -t and -ngl as a C int (std::stoi): anything larger is refused there.
INT_MAX = 2**31 - 1
# llama.cpp reads --seed with std::stoul into a uint32_t, so -1 wraps to 0xFFFFFFFF
# (LLAMA_DEFAULT_SEED: a random seed), and llama-server takes -1 for random too. A
# larger value would be cut to 32 bits without a word.
SEED_MIN, SEED_MAX = -1, 2**32 - 1
PROMPT_FORMATS = ("auto", "template", "flat")
# With RPC workers and no keep_alive, warm mode for this long: per call, every call
# would send the weights to the workers again.
RPC_DEFAULT_KEEP_ALIVE = "5m"

Check = Callable[[str, Any], Any]


def _wrong_type(name: str, value: object, wanted: str) -> OptionTypeError:
    return OptionTypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")


def check_integer(name: str, value: Any, minimum: int, maximum: int) -> int:
    # bool is an int to Python, but True as a token count is a mistake, not a 1.
    if isinstance(value, bool):
        raise _wrong_type(name, value, "an integer")
    try:
        number = operator.index(value)  # int, and integer types such as numpy's
    except TypeError:
        raise _wrong_type(name, value, "an integer") from None
    if not minimum <= number <= maximum:
        raise OptionValueError(
            f"{name} must be an integer from {minimum} to {maximum}, got {number}"
        )
    return number


def check_number(name: str, value: Any, minimum: float, *, above: bool = False) -> float:
    """A finite real number >= ``minimum`` (> when ``above``); bool refused."""
    if isinstance(value, bool) or not _is_real(value):
        raise _wrong_type(name, value, "a number")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (above and number == minimum):
        bound = ">" if above else ">="
        raise OptionValueError(f"{name} must be a finite number {bound} {minimum:g}, got {value!r}")
    return number


def _is_real(value: object) -> bool:
    if isinstance(value, (int, float)):
        return True
    import numbers  # only for other number types (numpy's, Fraction): rare

    return isinstance(value, numbers.Real)


def check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, "a string")
    if not value:
        raise OptionValueError(f"{name} is empty; leave it out instead")
    return value


def check_path(name: str, value: Any) -> str:
    """A str or os.PathLike naming a file (or, for chat_template, Jinja text)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise _wrong_type(name, value, "a str or os.PathLike path")
    if not text.strip():
        raise OptionValueError(f"{name} is empty; leave it out for the default")
    if "\x00" in text:
        raise OptionValueError(f"{name} holds a NUL byte, which no path can")
    return text


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, f"one of {choices}")
    if value not in choices:
        raise OptionValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _items(name: str, value: Any, what: str) -> list[Any]:
    """The items of a list-like option; one string, bytes, a mapping or a scalar is refused."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _wrong_type(name, value, f"a list of {what}")
    return list(value)


def check_stop(name: str, value: Any) -> tuple[str, ...]:
    """Stop sequences; one string is one sequence, as in the OpenAI and llama.cpp APIs."""
    items = [value] if isinstance(value, str) else _items(name, value, "strings")
    for item in items:
        if not isinstance(item, str):
            raise _wrong_type(f"each of {name}", item, "a string")
        if not item:
            raise OptionValueError(f"{name} sequences must be non-empty strings, got {item!r}")
        problem = lone_surrogate(item)
        if problem is not None:  # refused alike in both modes
            raise OptionValueError(f"{name} sequence {item!r} {problem}")
    return tuple(items)


def check_arguments(name: str, value: Any) -> tuple[str, ...]:
    """Command-line arguments: what subprocess takes (str or os.PathLike), as a list."""
    if isinstance(value, str):
        raise OptionTypeError(
            f"{name} must be a list of arguments, not one string: "
            f"write {shlex.split(value)!r} for {value!r}"
        )
    arguments = []
    for item in _items(name, value, "arguments"):
        text = os.fspath(item) if isinstance(item, os.PathLike) else item
        if not isinstance(text, str):
            raise _wrong_type(f"each of {name}", item, "a str or os.PathLike (write str(...))")
        if "\x00" in text:
            raise OptionValueError(f"{name} holds a NUL byte in {text!r}, which no argument can")
        arguments.append(text)
    return tuple(arguments)


def check_extra_args(name: str, value: Any) -> tuple[str, ...]:
    return refuse_flags(name, check_arguments(name, value))


def check_argv_template(name: str, value: Any) -> tuple[str, ...]:
    """Arguments with placeholders; a misspelt one or a prompt never passed fails now."""
    return check_placeholders(name, check_arguments(name, value))


def check_env(name: str, value: Any) -> dict[str, str]:
    """A child's whole environment: str names to str values, as the OS keeps them."""
    if not isinstance(value, Mapping):
        raise _wrong_type(name, value, "a mapping of str to str")
    for key, item in value.items():
        if not isinstance(key, str):
            raise _wrong_type(f"each name in {name}", key, "a string")
        if not isinstance(item, str):
            raise _wrong_type(f"{name}[{key!r}]", item, "a string (write str(...))")
        if not key or "=" in key or "\x00" in key:
            raise OptionValueError(
                f"{name} has the variable name {key!r}, which no environment can"
            )
        if "\x00" in item:
            raise OptionValueError(f"{name}[{key!r}] holds a NUL byte, which no environment can")
    return dict(value)


def check_keep_alive(name: str, value: Any) -> float | str:
    """Validated now; kept as given, since 0 (per call, even with RPC workers) and None
    (not given) mean different things."""
    if isinstance(value, bool) or not (isinstance(value, str) or _is_real(value)):
        raise _wrong_type(name, value, "seconds or a duration like '5m'")
    given: float | str = value if isinstance(value, str) else float(value)
    parse_keep_alive(given, name)
    return given


def check_rpc_servers(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        value = _items(name, value, "'host:port' strings")
        for item in value:
            if not isinstance(item, str):
                raise _wrong_type(f"each of {name}", item, "a 'host:port' string")
    try:
        return rpc.parse_servers(value)
    except ValueError as error:
        raise OptionValueError(f"{name}: {error}") from None


def check_tensor_split(name: str, value: Any) -> tuple[float, ...] | None:
    """Each device's share of the layers, e.g. [3, 1]; llama.cpp's -ts takes them as such."""
    if isinstance(value, str):
        raise OptionTypeError(
            f"{name} must be a list of numbers such as [1, 1], not the string {value!r}"
        )
    items = _items(name, value, "numbers")
    shares = tuple(check_number(f"{name}[{index}]", item, 0.0) for index, item in enumerate(items))
    return shares or None


def check_response_format(name: str, value: Any) -> dict[str, Any]:
    constraint_of(value, None)
    return dict(value)


def constraint_of(
    response_format: Mapping[str, Any] | None, grammar: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """(json_schema, grammar) from the cloud providers' ``response_format`` shape or GBNF."""
    if grammar is not None:
        check_text("grammar", grammar)
    if response_format is None:
        return None, grammar
    if grammar is not None:
        raise OptionValueError("give response_format or grammar, not both")
    if not isinstance(response_format, Mapping):
        raise _wrong_type("response_format", response_format, 'a dict like {"type": "json_object"}')
    kind = response_format.get("type")
    if kind == "text":
        return None, None
    if kind == "json_object":
        return {"type": "object"}, None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            return dict(schema), None
        raise OptionValueError(
            'response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}'
        )
    raise OptionValueError(
        'response_format must be {"type": "json_object"} or {"type": "json_schema", ...}, '
        f"got {response_format!r}"
    )


TRANSPORT_METHODS = ("open", "runs_llama_cpp", "explain", "health", "close")


def check_transport(name: str, value: Any) -> Any:
    """Any object that speaks ``transports.base.Transport`` (checked by shape: it is a Protocol)."""
    missing = [method for method in TRANSPORT_METHODS if not callable(getattr(value, method, None))]
    if missing or not isinstance(getattr(value, "name", None), str):
        raise OptionTypeError(
            f"{name} must implement jazzmine.local.Transport; {type(value).__name__} lacks "
            + (", ".join(missing) or "a name")
        )
    return value
