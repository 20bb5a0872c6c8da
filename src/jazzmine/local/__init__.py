"""jazzmine-local: the local provider for jazzmine (llama.cpp as a child process).

The whole public API is importable from here. The data classes, errors and base class
are loaded at once (they are small); ``LocalLLM`` and the transports on first use (the
lazy entry point), so ``import jazzmine.local`` stays cheap for a program that only
handles its types. Everything else imports at the top of its module, except three heavy
edges loaded by the use that needs them, so ``LocalLLM`` itself stays cheap to import:
the HTTP client (warm mode, ``llm``), the template engine (templated prompts,
``prompt.writer``) and asyncio (async calls, ``stream``, ``limits``, ``llm.aclose``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import BaseLLM
from .errors import (
    LLMConnectionError,
    LLMContextLengthError,
    LLMError,
    LLMIncompleteOutputError,
    LLMInternalError,
    LLMInvalidRequestError,
    LLMRateLimitError,
    LLMTimeoutError,
    LLMToolCallError,
    LLMUnsupportedPlatformError,
)
from .request import GenerationRequest, RunOutcome
from .types import LLMResponse, LLMUsage, MessagePart
from .usage import estimate_tokens

if TYPE_CHECKING:
    from .llm import LocalLLM
    from .mock import MockReply, MockTransport
    from .stream import AsyncResponseStream, ResponseStream
    from .tools.spec import ToolCall
    from .transports.base import Session, Transport
    from .transports.server.budget import loaded_models, set_model_budget

__version__ = "0.3.0"

# Public name -> the module that defines it, imported when the name is first asked for.
_LAZY = {
    "LocalLLM": "llm",
    "MockReply": "mock",
    "MockTransport": "mock",
    "ResponseStream": "stream",
    "AsyncResponseStream": "stream",
    "Session": "transports.base",
    "Transport": "transports.base",
    "ToolCall": "tools.spec",
    "set_model_budget": "transports.server.budget",
    "loaded_models": "transports.server.budget",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncResponseStream",
    "BaseLLM",
    "GenerationRequest",
    "LLMConnectionError",
    "LLMContextLengthError",
    "LLMError",
    "LLMIncompleteOutputError",
    "LLMInternalError",
    "LLMInvalidRequestError",
    "LLMRateLimitError",
    "LLMResponse",
    "LLMTimeoutError",
    "LLMToolCallError",
    "LLMUnsupportedPlatformError",
    "LLMUsage",
    "LocalLLM",
    "MessagePart",
    "MockReply",
    "MockTransport",
    "ResponseStream",
    "RunOutcome",
    "Session",
    "ToolCall",
    "Transport",
    "estimate_tokens",
    "loaded_models",
    "set_model_budget",
]
