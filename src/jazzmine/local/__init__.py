"""jazzmine's LLM layer: one API over every provider (here: local binaries)."""

from .base import BaseLLM
from .errors import (
    LLMConnectionError,
    LLMError,
    LLMInternalError,
    LLMInvalidRequestError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from .llm import LocalLLM
from .types import LLMResponse, LLMUsage, MessagePart
from .usage import estimate_tokens

__all__ = [
    "BaseLLM",
    "LLMConnectionError",
    "LLMError",
    "LLMInternalError",
    "LLMInvalidRequestError",
    "LLMRateLimitError",
    "LLMResponse",
    "LLMTimeoutError",
    "LLMUsage",
    "LocalLLM",
    "MessagePart",
    "estimate_tokens",
]
