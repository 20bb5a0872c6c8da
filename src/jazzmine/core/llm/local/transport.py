"""The seam between LocalLLM and the ways of reaching a model.

A transport turns a request into raw output bytes and a final ``RunOutcome``; it knows
nothing of prompts, stop handling or usage accounting, which stay in LocalLLM and reply
assembly. Two implementations: ``percall`` (a child process per call, the spec) and
``server`` (a kept llama-server, warm mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from .reply import OutputShape
from .request import GenerationRequest, RunOutcome


class Session(Protocol):
    """One request in flight (sync)."""

    shape: OutputShape
    details: dict[str, Any]

    def chunks(self, deadline: float | None) -> Iterator[bytes]: ...

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        """After the last chunk (or once the reply is complete): how the run ended."""
        ...

    def stderr_text(self) -> str: ...


class AsyncSession(Protocol):
    """One request in flight (asyncio)."""

    shape: OutputShape
    details: dict[str, Any]

    def chunks(self, deadline: float | None) -> AsyncIterator[bytes]: ...

    async def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome: ...

    def stderr_text(self) -> str: ...


class Transport(Protocol):
    name: str

    def open(
        self, request: GenerationRequest, deadline: float | None
    ) -> AbstractContextManager[Session]: ...

    async def aopen(
        self, request: GenerationRequest, deadline: float | None
    ) -> AbstractAsyncContextManager[AsyncSession]: ...

    def health(self) -> bool: ...

    def close(self) -> None: ...
