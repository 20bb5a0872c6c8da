"""Messages in, prompt text out: validation and the spec's flattening.

Knows nothing of processes or servers; every transport receives the text built here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import LLMInvalidRequestError, lone_surrogate
from ..types import MessagePart

KNOWN_ROLES = ("system", "user", "assistant", "tool")

# Where a new turn of the flattened conversation would begin: the model must stop there
# so it never writes the user's next message.
NEXT_TURN_MARKERS = tuple(f"\n{role.capitalize()}:" for role in KNOWN_ROLES[:3])


def validate_messages(messages: Sequence[Any]) -> list[MessagePart]:
    """Return the messages as ``MessagePart``s, or raise naming the first bad one.

    Accepted: this package's ``MessagePart``, the jazzmine framework's, any object with
    ``role`` and ``content`` attributes, and dicts with those keys, as most LLM libraries
    do; an assistant message may carry ``tool_calls`` (its content then may be None) and
    a ``tool`` message its ``tool_call_id`` and ``name``, in OpenAI's shape.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise LLMInvalidRequestError(
            f"messages must be a list of MessagePart, got {type(messages).__name__}"
        )
    if not messages:
        raise LLMInvalidRequestError("messages is empty: give at least one MessagePart")
    return [_checked(index, message) for index, message in enumerate(messages)]


def _field(message: Any, name: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(name)
    return getattr(message, name, None)


def _checked(index: int, message: Any) -> MessagePart:
    where = f"messages[{index}]"
    if isinstance(message, Mapping) and "role" in message and "content" in message:
        role, content = message["role"], message["content"]
    elif isinstance(message, Mapping) and "role" in message and "tool_calls" in message:
        role, content = message["role"], None  # OpenAI leaves content out beside calls
    elif hasattr(message, "role") and hasattr(message, "content"):
        role, content = message.role, message.content
    else:
        raise LLMInvalidRequestError(
            f"{where} is a {type(message).__name__}; give a MessagePart, an object "
            "with role and content, or a dict with those keys"
        )
    if not isinstance(role, str) or role.lower() not in KNOWN_ROLES:
        raise LLMInvalidRequestError(
            f"{where} has role {role!r}; known roles are {', '.join(KNOWN_ROLES)}"
        )
    role = role.lower()
    tool_calls = _tool_calls(where, _field(message, "tool_calls"))
    if tool_calls is not None and role != "assistant":
        raise LLMInvalidRequestError(f"{where} has tool_calls, which only an assistant turn makes")
    if content is None and tool_calls:
        content = ""
    if not isinstance(content, str):
        raise LLMInvalidRequestError(f"{where} content is a {type(content).__name__}, not a str")
    check_prompt_text(f"{where} content", content)
    tool_call_id = _optional_text(where, "tool_call_id", _field(message, "tool_call_id"))
    name = _optional_text(where, "name", _field(message, "name"))
    return MessagePart(
        role=role, content=content, tool_calls=tool_calls, tool_call_id=tool_call_id, name=name
    )


def check_prompt_text(where: str, text: str) -> None:
    """Text that can reach a model: no NUL byte, and encodable as UTF-8."""
    if "\x00" in text:
        raise LLMInvalidRequestError(f"{where} holds a NUL byte, which no prompt can carry")
    problem = lone_surrogate(text)
    if problem is not None:
        raise LLMInvalidRequestError(f"{where} {problem}")


def _optional_text(where: str, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise LLMInvalidRequestError(f"{where} {name} must be a str, got {type(value).__name__}")
    check_prompt_text(f"{where} {name}", value)
    return value


def _tool_calls(where: str, calls: Any) -> list[dict[str, Any]] | None:
    """An assistant turn's calls in OpenAI's shape, arguments as a JSON string. Accepts
    OpenAI's dicts (arguments a string or a dict) and this package's ``ToolCall``."""
    if calls is None:
        return None
    if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Sequence):
        raise LLMInvalidRequestError(f"{where} tool_calls must be a list")
    result = []
    for number, call in enumerate(calls):
        at = f"{where} tool_calls[{number}]"
        if hasattr(call, "to_openai"):
            call = call.to_openai()
        function = call.get("function") if isinstance(call, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise LLMInvalidRequestError(
                f"{at} must be {{'id': ..., 'type': 'function', 'function': "
                "{'name': ..., 'arguments': ...}}"
            )
        assert isinstance(call, Mapping) and isinstance(function, Mapping)
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise LLMInvalidRequestError(f"{at} arguments are not JSON: {exc}") from None
        check_prompt_text(f"{at} arguments", arguments)
        call_id = call.get("id")
        result.append(
            {
                "id": call_id if isinstance(call_id, str) else "",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return result


def flatten(messages: Sequence[MessagePart]) -> str:
    """The spec's format: ``Role: content`` per message, ending with ``Assistant: ``."""
    lines = [f"{message.role.capitalize()}: {message.content}" for message in messages]
    return "\n".join(lines) + "\nAssistant: "
