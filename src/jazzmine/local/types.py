"""Plain data exchanged with every provider (field names match jazzmine 0.1.x).

With the jazzmine framework installed, each class derives from the framework's class of the
same name: the framework's code that checks for or builds on them accepts these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .framework import data_class


@dataclass
class LLMUsage(data_class("LLMUsage")):  # type: ignore[misc]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None


@dataclass
class LLMResponse(data_class("LLMResponse")):  # type: ignore[misc]
    text: str
    usage: LLMUsage
    model: str
    latency_ms: int | None = None
    finish_reason: str | None = None
    raw: Any | None = None
    api_metrics: dict[str, Any] | None = None
    # The functions the model called (``tools=``): ToolCall objects with ``id``, ``name``
    # and ``arguments`` checked against the tool's schema. Empty when it called none.
    tool_calls: list[Any] = field(default_factory=list)
    # What a reasoning model thought before answering; None when it did not think.
    reasoning: str | None = None


@dataclass
class MessagePart(data_class("MessagePart")):  # type: ignore[misc]
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    # An assistant turn's calls, in OpenAI's shape: {"id", "type": "function",
    # "function": {"name", "arguments"}}, arguments as a JSON string.
    tool_calls: list[dict[str, Any]] | None = None
    # A "tool" message: the call it answers, and the function's name.
    tool_call_id: str | None = None
    name: str | None = None
    # An assistant turn's reasoning (OpenAI-compatible servers' ``reasoning_content``):
    # templates that keep thinking in history print it in their own markers.
    reasoning_content: str | None = None
