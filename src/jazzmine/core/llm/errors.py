"""The error tree shared by every provider.

    LLMError
     ├── LLMTimeoutError          the call ran past its ``timeout``
     ├── LLMRateLimitError        a provider refused for load (never raised by LocalLLM)
     ├── LLMConnectionError       a server or worker could not be reached
     ├── LLMInvalidRequestError   the request itself is wrong; nothing was run
     └── LLMInternalError         the model process failed (exit code, signal, stderr)

Errors raised after generation started carry ``partial_text``: the reply text produced
before the failure, so nothing the model wrote is lost.
"""

from __future__ import annotations


class LLMError(Exception):
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


class LLMTimeoutError(LLMError):
    pass


class LLMRateLimitError(LLMError):
    pass


class LLMConnectionError(LLMError):
    pass


class LLMInvalidRequestError(LLMError):
    pass


class LLMInternalError(LLMError):
    pass
