"""Plain data exchanged with every provider (field names match jazzmine 0.1.x)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LLMUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None


@dataclass
class LLMResponse:
    text: str
    usage: LLMUsage
    model: str
    latency_ms: int | None = None
    finish_reason: str | None = None
    raw: Any | None = None
    api_metrics: dict[str, Any] | None = None


@dataclass
class MessagePart:
    role: str  # "system", "user" or "assistant"
    content: str
