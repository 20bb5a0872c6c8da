"""The seam between LocalLLM and the ways of reaching a model.

A transport turns a ``GenerationRequest`` into raw output bytes and a final
``RunOutcome``; it knows nothing of prompts, stop handling or usage accounting, which
stay in ``call`` and ``reply``. It is also the one place that knows what only the way of
running can know: whether the binary is llama.cpp (so the prompt may use the model's
chat template) and what a failure means (a broken model file, a worker gone).

Implementations: ``PerCallTransport`` (a child process per call, the spec),
``ServerTransport`` (a kept llama-server, warm mode) and ``MockTransport`` (scripted, for
tests). Any object with these methods can be handed to ``LocalLLM(transport=...)``.
Transports are blocking; asyncio callers reach them through ``bridge``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..errors import LLMError
from ..request import GenerationRequest, OutputShape, RunOutcome


class Session(Protocol):
    """One request in flight. ``interrupt`` may be called from any thread."""

    shape: OutputShape
    details: dict[str, Any]

    def chunks(self, deadline: float | None) -> Iterator[bytes]: ...

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        """After the last chunk (or once the reply is complete): how the run ended."""
        ...

    def stderr_text(self) -> str: ...

    def interrupt(self, reason: str) -> None:
        """End the run now: its output is no longer wanted (``reason`` names who ended it)."""
        ...


class Transport(Protocol):
    name: str

    def open(
        self, request: GenerationRequest, deadline: float | None
    ) -> AbstractContextManager[Session]: ...

    def runs_llama_cpp(self) -> bool:
        """True when prompts reach llama.cpp itself, which reads the model's template."""
        ...

    def explain(self, error: LLMError) -> str | None:
        """What the transport can tell of a failure that its own message may lack."""
        ...

    def health(self) -> bool: ...

    def close(self) -> None:
        """Release what is pooled; calls still running end with an error."""
        ...
