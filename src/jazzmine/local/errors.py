"""The error tree shared by every provider.

    LLMError
     ├── LLMTimeoutError          the call ran past its ``timeout``
     ├── LLMRateLimitError        a provider refused for load (never raised by LocalLLM)
     ├── LLMConnectionError       a server or worker could not be reached
     ├── LLMInvalidRequestError   the request itself is wrong; nothing was run
     │    └── LLMContextLengthError   the prompt does not fit the context
     └── LLMInternalError         the model process failed (exit code, signal, stderr)
          └── LLMIncompleteOutputError   it exited 0 without what it prints at its end

Errors raised after generation started carry ``partial_text``: the reply text produced
before the failure, so nothing the model wrote is lost.

With the jazzmine framework installed, each class also derives from the framework's class
of the same name, so ``except jazzmine.core.llm.LLMTimeoutError`` catches this package's
timeouts and the attributes below stay on them.
"""

from __future__ import annotations

from typing import Any

from .framework import error_class


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


class LLMUnsupportedPlatformError(LLMInvalidRequestError):
    """What was asked needs something this system lacks (on Windows: a llama.cpp child
    process, which needs POSIX process groups, parent death and Unix sockets)."""


class LLMContextLengthError(LLMInvalidRequestError):
    """The prompt is longer than the context: ``prompt_tokens`` against ``context_size``
    (as llama.cpp counted them), the same in both modes."""

    def __init__(
        self,
        message: str,
        *,
        prompt_tokens: int | None = None,
        context_size: int | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size


class LLMToolCallError(LLMInternalError):
    """The reply started a tool call that cannot be used: unparsable, cut off, an unknown
    function, or arguments that break the tool's schema.

    An internal error because the request was fine and the model's output was not.
    ``raw_text`` (also ``partial_text``) is the whole reply, so nothing is lost.
    """

    def __init__(self, message: str, *, raw_text: str | None = None, **details: Any) -> None:
        if raw_text is not None:
            details["partial_text"] = raw_text
        super().__init__(message, **details)
        self.raw_text = self.partial_text


class OptionTypeError(LLMInvalidRequestError, TypeError):
    """An option of the wrong type. A TypeError, as Python raises for its own arguments, and
    an LLMInvalidRequestError, which code written for any jazzmine provider catches."""


class OptionValueError(LLMInvalidRequestError, ValueError):
    """An option of the right type whose value is out of range or malformed."""


class DeadlineExceeded(Exception):
    """Internal: a wait inside a transport ran past the call's deadline. Never reaches the
    caller: the call boundary (``call.Call.failure``) turns it into ``LLMTimeoutError``."""


def completed(error: LLMError, *, partial_text: str, stderr: str, cause: str | None) -> LLMError:
    """The error the caller sees: a transport's error with what only the call knows (the
    reply so far, the stderr, a diagnosed cause) built in, as a new object."""
    message = f"{cause}; {error.message}" if cause else error.message
    rebuilt = type(error)(
        message,
        partial_text=error.partial_text or partial_text,
        stderr=error.stderr or stderr,
        exit_code=error.exit_code,
        signal_name=error.signal_name,
    )
    # What a subclass carries besides (a context error's counts) comes along unchanged.
    for name, value in vars(error).items():
        if name not in _BASE_FIELDS:
            setattr(rebuilt, name, value)
    return rebuilt


_BASE_FIELDS = frozenset({"message", "partial_text", "stderr", "exit_code", "signal_name"})


def context_length_error(
    prompt_tokens: int, context_size: int, **details: Any
) -> LLMContextLengthError:
    """The one wording for a prompt over the context, whichever mode found it."""
    return LLMContextLengthError(
        f"the prompt is {prompt_tokens} tokens, which does not fit the {context_size} tokens of "
        "context (pass a larger n_ctx, or shorten the conversation)",
        prompt_tokens=prompt_tokens,
        context_size=context_size,
        **details,
    )


class LLMIncompleteOutputError(LLMInternalError):
    """A per-call llama.cpp child exited with status 0 without what it always prints at its
    end (llama-completion's closing statistics, llama-cli's "Exiting..."): it did not
    finish writing, so the reply may be cut short. Never a normal success: the text that
    did come is in ``partial_text`` (a stream has already handed it out), with the stderr."""


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` is not text, when it holds a lone surrogate (never in model output,
    and llama-server refuses it), else None: each caller raises its own error type."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a lone surrogate ({text[exc.start]!r} at {exc.start}), which is not text "
            "and cannot be encoded as UTF-8"
        )
    return None
