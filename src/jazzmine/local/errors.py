"""The error tree shared by every provider.

    LLMError
     ├── LLMTimeoutError          the call ran past its ``timeout``
     ├── LLMRateLimitError        a provider refused for load (never raised by LocalLLM)
     ├── LLMConnectionError       a server or worker could not be reached
     ├── LLMInvalidRequestError   the request itself is wrong; nothing was run
     └── LLMInternalError         the model process failed (exit code, signal, stderr)

Errors raised after generation started carry ``partial_text``: the reply text produced
before the failure, so nothing the model wrote is lost.

With the jazzmine framework installed, each class also derives from the framework's class
of the same name, so ``except jazzmine.core.llm.LLMTimeoutError`` catches this package's
timeouts and the attributes below stay on them.
"""

from __future__ import annotations

from ._framework import error_class


class LLMError(error_class("LLMError")):  # type: ignore[misc]
    """Base class for all LLM errors."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        stderr: str = "",
        exit_code: int | None = None,
        signal_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.partial_text = partial_text
        self.stderr = stderr
        self.exit_code = exit_code
        self.signal_name = signal_name


class LLMTimeoutError(LLMError, error_class("LLMTimeoutError")):  # type: ignore[misc]
    pass


class LLMRateLimitError(LLMError, error_class("LLMRateLimitError")):  # type: ignore[misc]
    pass


class LLMConnectionError(LLMError, error_class("LLMConnectionError")):  # type: ignore[misc]
    pass


class LLMInvalidRequestError(LLMError, error_class("LLMInvalidRequestError")):  # type: ignore[misc]
    pass


class LLMInternalError(LLMError, error_class("LLMInternalError")):  # type: ignore[misc]
    pass


class DeadlineExceeded(Exception):
    """Internal: work stopped because the call's deadline passed (e.g. a chat template
    rendering); the caller turns it into an LLMTimeoutError with what it knows."""
