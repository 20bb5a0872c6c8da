"""The seam between LocalLLM and the ways of reaching a model.

A transport turns a request into raw output bytes and a final ``RunOutcome``; it knows
nothing of prompts, stop handling or usage accounting, which stay in LocalLLM and reply
assembly. Two implementations: ``percall`` (a child process per call, the spec) and
``server`` (a kept llama-server, warm mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol, TypeVar

from .reply import OutputShape
from .request import GenerationRequest, RunOutcome

_T = TypeVar("_T")


async def off_loop(work: Callable[[], _T], undo: Callable[[_T], None]) -> _T:
    """``work()`` in a thread, off the event loop. A cancel cannot stop the thread, so
    when the caller is cancelled, ``undo`` runs on what the thread goes on to return."""
    import asyncio

    running = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:

        def undo_result(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                undo(done.result())

        running.add_done_callback(undo_result)
        raise


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
