"""Tool definitions, tool_choice, tool calls and their error: the shapes, checked.

``tools`` takes OpenAI's function shape, ``{"type": "function", "function": {"name",
"description", "parameters"}}``; ``tool_choice`` takes ``"auto"``, ``"none"``,
``"required"`` or ``{"type": "function", "function": {"name": ...}}``. Both are checked
here once, so everything downstream (templates, grammars, parsers) works on the frozen
``Tool`` and ``Choice`` values below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionTypeError, OptionValueError
from .schema import check_plain, check_schema

# OpenAI's own rule for function names; it also keeps names safe inside every call format
# (a bare name sits between markers in Mistral's "[TOOL_CALLS]name[ARGS]").
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHOICE_MODES = ("auto", "none", "required")


@dataclass(frozen=True)
class Tool:
    """One function the model may call. ``parameters`` is its JSON schema as given
    (``{}`` when there was none): templates print it as it is."""

    name: str
    description: str
    parameters: dict[str, Any]

    @property
    def schema(self) -> dict[str, Any]:
        """The schema the arguments are held to: ``common_chat_tool_parameters`` reads
        no parameters as an object with no properties."""
        return self.parameters or {"type": "object", "properties": {}}

    def as_template_tool(self) -> dict[str, Any]:
        """The tool as llama.cpp hands it to a chat template.

        ``common_chat_tools_to_json_oaicompat`` rebuilds every tool with these keys in
        this order and an empty description when there is none; templates print it with
        ``tojson``, so the order is part of the prompt.
        """
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class Choice:
    """A checked tool_choice: ``mode`` is auto, none, required or named (then ``name``)."""

    mode: str
    name: str | None = None

    @property
    def forces_call(self) -> bool:
        """The reply must be tool calls (and nothing else)."""
        return self.mode in ("required", "named")


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: ``arguments`` parsed and valid against the tool's schema."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's message shape, ``arguments`` as a JSON string (what templates read)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(self.arguments, ensure_ascii=False),
            },
        }


def check_tools(tools: Any, name: str = "tools") -> tuple[Tool, ...]:
    """The tools as ``Tool``s; a TypeError/ValueError (also LLMInvalidRequestError) names
    the first malformed one. None and an empty list both mean no tools."""
    if tools is None:
        return ()
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise OptionTypeError(
            f"{name} must be a list of {{'type': 'function', 'function': {{...}}}} dicts, "
            f"got {type(tools).__name__}"
        )
    checked: list[Tool] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"{name}[{index}]"
        if not isinstance(tool, Mapping):
            raise OptionTypeError(f"{where} must be a dict, got {type(tool).__name__}")
        if tool.get("type") != "function":
            raise OptionValueError(
                f"{where} needs 'type': 'function' (the only kind of tool), got "
                f"{tool.get('type')!r}"
            )
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise OptionTypeError(
                f"{where}['function'] must be a dict with 'name' and 'parameters', got "
                f"{type(function).__name__}"
            )
        unknown = set(tool) - {"type", "function"}
        if unknown:
            raise OptionValueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        checked.append(_check_function(function, where, seen))
    return tuple(checked)


def _check_function(function: Mapping[str, Any], where: str, seen: set[str]) -> Tool:
    tool_name = function.get("name")
    if not isinstance(tool_name, str):
        raise OptionTypeError(f"{where}['function']['name'] must be a str, got {tool_name!r}")
    if not _NAME.fullmatch(tool_name):
        raise OptionValueError(
            f"{where}['function']['name'] {tool_name!r} must be 1 to 64 letters, digits, '_' or '-'"
        )
    if tool_name in seen:
        raise OptionValueError(f"{where}: two tools are named {tool_name!r}")
    seen.add(tool_name)
    description = function.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise OptionTypeError(
            f"{where}['function']['description'] must be a str, got {type(description).__name__}"
        )
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {}  # llama.cpp: function.value("parameters", json::object())
    if not isinstance(parameters, Mapping):
        raise OptionTypeError(
            f"{where}['function']['parameters'] must be a JSON schema dict, got "
            f"{type(parameters).__name__}"
        )
    if parameters.get("type", "object") != "object":
        raise OptionValueError(
            f"{where}['function']['parameters'] must describe an object "
            f"(type 'object'), got type {parameters.get('type')!r}"
        )
    unknown = set(function) - {"name", "description", "parameters", "strict"}
    if unknown:
        raise OptionValueError(
            f"{where}['function'] has unknown keys: {', '.join(sorted(unknown))}"
        )
    # Bounded first: a copy, the template's tojson and the checks all walk the schema as
    # a tree, so parts shared by reference (or a schema that holds itself) would expand.
    too_big = check_plain(parameters, f"{where}['function']['parameters']")
    if too_big is not None:
        raise OptionValueError(too_big)
    try:
        # a deep copy through JSON: the schema must be plain JSON, and later edits by the
        # caller must not change a grammar already built from it
        plain = json.loads(json.dumps(parameters))
    except (TypeError, ValueError) as exc:
        raise OptionTypeError(
            f"{where}['function']['parameters'] is not plain JSON: {exc}"
        ) from exc
    problem = check_schema(plain)
    if problem is not None:
        raise OptionValueError(f"{where}['function']['parameters']: {problem}")
    return Tool(tool_name, description, plain)


def check_tool_choice(choice: Any, tools: Sequence[Tool], name: str = "tool_choice") -> Choice:
    """The checked tool_choice; None means "auto" (OpenAI's default when tools are given)."""
    if choice is None:
        return Choice("auto")
    if isinstance(choice, str):
        if choice not in CHOICE_MODES:
            raise OptionValueError(
                f"{name} must be 'auto', 'none', 'required' or "
                f"{{'type': 'function', 'function': {{'name': ...}}}}, got {choice!r}"
            )
        if choice == "required" and not tools:
            raise OptionValueError(f"{name}='required' needs tools")
        return Choice(choice)
    if not isinstance(choice, Mapping):
        raise OptionTypeError(f"{name} must be a str or a dict, got {type(choice).__name__}")
    function = choice.get("function")
    if choice.get("type") != "function" or not isinstance(function, Mapping):
        raise OptionValueError(
            f"{name} as a dict must be {{'type': 'function', 'function': {{'name': ...}}}}, "
            f"got {dict(choice)!r}"
        )
    wanted = function.get("name")
    if not isinstance(wanted, str):
        raise OptionTypeError(f"{name}['function']['name'] must be a str, got {wanted!r}")
    known = [tool.name for tool in tools]
    if wanted not in known:
        listed = ", ".join(repr(n) for n in known) or "none"
        raise OptionValueError(f"{name} names {wanted!r}, which is not a tool (tools: {listed})")
    return Choice("named", wanted)


_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def call_id(raw_text: str, index: int, style: str = "openai") -> str:
    """A call id derived from the whole reply and the call's position in it.

    Deterministic rather than random: the streamed and the joined form of one reply get
    the same ids, a test can predict them, and a reply replayed from a log keeps its ids.
    The whole reply goes into the hash, so two different replies do not share ids even
    when they call the same function with the same arguments. ``style="mistral"`` gives
    the 9 letters and digits Mistral's templates insist on when the call is sent back.
    """
    digest = hashlib.sha256(f"{index}\x00{raw_text}".encode()).digest()
    if style == "mistral":
        number = int.from_bytes(digest[:8], "big")
        chars = []
        for _ in range(9):
            number, rest = divmod(number, len(_ALNUM))
            chars.append(_ALNUM[rest])
        return "".join(chars)
    return "call_" + digest.hex()[:24]
