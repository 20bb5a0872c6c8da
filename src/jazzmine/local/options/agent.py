"""Checks for the options agents tune: sampling per call, tools, reasoning, and the
conversation policies. Same contract as ``checks``: (name, value) in, the value
normalised out, or an ``OptionTypeError``/``OptionValueError``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import OptionTypeError, OptionValueError
from .checks import INT_MAX, check_integer, check_number

if TYPE_CHECKING:
    from ..tools.spec import Choice, Tool

# The tool checks (tools_spec, with JSON Schema) are imported by the first call that
# uses tools, so a program that never does never pays for them.

CONTEXT_OVERFLOW = ("error", "drop_oldest")


def check_fraction(name: str, value: Any) -> float:
    """A probability: 0 to 1 (top_p, min_p)."""
    number = check_number(name, value, 0.0)
    if number > 1.0:
        raise OptionValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    return number


def check_penalty(name: str, value: Any) -> float:
    """Any finite number: llama.cpp takes negative penalties (they reward repetition)."""
    return check_number(name, value, -math.inf)


def check_top_k(name: str, value: Any) -> int:
    """0 turns top-k off, as in llama.cpp."""
    return check_integer(name, value, 0, INT_MAX)


def check_tools_option(name: str, value: Any) -> tuple[Tool, ...]:
    from ..tools.spec import check_tools

    return check_tools(value, name)


def check_tool_choice_option(name: str, value: Any) -> Any:
    """The shape only: a named function is matched against the tools of the call."""
    from ..tools.spec import Tool, check_tool_choice

    if isinstance(value, str):
        check_tool_choice(value, [Tool("_", "", {})], name)
        return value
    function = value.get("function") if isinstance(value, dict) else None
    wanted = function.get("name") if isinstance(function, dict) else None
    if isinstance(wanted, str):
        check_tool_choice(value, [Tool(wanted, "", {})], name)
        return {"type": "function", "function": {"name": wanted}}
    check_tool_choice(value, [], name)  # raises, naming what is wrong
    raise AssertionError("unreachable")  # pragma: no cover


def tool_choice_of(value: Any, tools: tuple[Tool, ...], name: str = "tool_choice") -> Choice:
    """A checked tool_choice against the call's tools."""
    from ..tools.spec import check_tool_choice

    return check_tool_choice(value, tools, name)


def check_reasoning(name: str, value: Any) -> bool | int:
    """True: the model may think (default); False (or 0): thinking off where the template
    can turn it off; a positive integer: at most that many tokens of thinking."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        budget = check_integer(name, value, 0, INT_MAX)
        return budget if budget else False
    raise OptionTypeError(
        f"{name} must be True, False or a token budget (an integer), got {value!r} "
        f"({type(value).__name__})"
    )


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionTypeError(f"{name} must be True or False, got {value!r}")
    return value
