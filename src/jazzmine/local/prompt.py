"""Messages in, prompt text out: validation and the spec's flattening.

Knows nothing of processes or servers; every transport receives the text built here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import LLMInvalidRequestError
from .types import MessagePart

KNOWN_ROLES = ("system", "user", "assistant")

# Where a new turn of the flattened conversation would begin: the model must stop there
# so it never writes the user's next message.
NEXT_TURN_MARKERS = tuple(f"\n{role.capitalize()}:" for role in KNOWN_ROLES)


def validate_messages(messages: Sequence[Any]) -> list[MessagePart]:
    """Return the messages as ``MessagePart``s, or raise naming the first bad one.

    Accepted: this package's ``MessagePart``, the jazzmine framework's, any object with
    ``role`` and ``content`` attributes, and dicts with those keys, as most LLM libraries do.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise LLMInvalidRequestError(
            f"messages must be a list of MessagePart, got {type(messages).__name__}"
        )
    if not messages:
        raise LLMInvalidRequestError("messages is empty: give at least one MessagePart")
    checked: list[MessagePart] = []
    for index, message in enumerate(messages):
        if isinstance(message, Mapping) and "role" in message and "content" in message:
            role, content = message["role"], message["content"]
        elif hasattr(message, "role") and hasattr(message, "content"):
            role, content = message.role, message.content
        else:
            raise LLMInvalidRequestError(
                f"messages[{index}] is a {type(message).__name__}; give a MessagePart, an object "
                "with role and content, or a dict with those keys"
            )
        if not isinstance(role, str) or role.lower() not in KNOWN_ROLES:
            raise LLMInvalidRequestError(
                f"messages[{index}] has role {role!r}; known roles are {', '.join(KNOWN_ROLES)}"
            )
        if not isinstance(content, str):
            raise LLMInvalidRequestError(
                f"messages[{index}] content is a {type(content).__name__}, not a str"
            )
        if "\x00" in content:
            raise LLMInvalidRequestError(
                f"messages[{index}] content holds a NUL byte, which no prompt can carry"
            )
        checked.append(MessagePart(role=role.lower(), content=content))
    return checked


def flatten(messages: Sequence[MessagePart]) -> str:
    """The spec's format: ``Role: content`` per message, ending with ``Assistant: ``."""
    lines = [f"{message.role.capitalize()}: {message.content}" for message in messages]
    return "\n".join(lines) + "\nAssistant: "
