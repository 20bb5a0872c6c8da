"""Async iteration of a blocking stream that runs in a thread of its own.

Every call is written once, as blocking code: a child's pipes or a server's socket are
read in one place, and the stop policy lives with them. ``agenerate`` and ``astream`` run
that same code in a thread and hand its pieces to the event loop, so the loop never blocks
on a read, a template render or a probe, and sync and async cannot drift apart.

A cancelled or closed consumer follows one policy (trio's): deliver the interrupt (which
ends the child or the request), then still wait for the thread to finish its clean-up,
so nothing outlives the call. The thread is not a pool's: a slow call never starves
another, and waiting for a slot happens on the loop before the thread starts.

``OffLoop`` is a plain async iterator, not an async generator, on purpose: an abandoned
async generator is closed by the loop's finaliser hook, in a task of its own and in no
set order, so nested ones are closed twice at once ("aclose(): asynchronous generator is
already running") and a closing one can be cancelled by the loop's own shutdown. An
``OffLoop`` nobody closes is stopped by ``__del__`` instead, which needs no loop: the
thread does the clean-up by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# Pieces the thread may run ahead of the consumer: the pipe's own backpressure, kept.
AHEAD = 64
_ITEM, _END, _ERROR = "item", "end", "error"


class OffLoop(Generic[T]):
    """Yields what ``source`` yields; ``source`` runs (and is closed) in its own thread.

    ``interrupt`` must be safe to call from any thread and make a blocked ``next()`` on
    ``source`` return soon; it is called when the consumer stops early. ``on_exit`` runs
    in the thread once ``source`` is closed, whatever happened (it frees the call's slot
    only when its child is gone).
    """

    def __init__(
        self,
        source: Iterator[T],
        interrupt: Callable[[], None],
        *,
        on_exit: Callable[[], None] | None = None,
        name: str = "jazzmine-call",
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        stopping = threading.Event()

        # Holds the queue, never ``self``: the thread must not keep its OffLoop alive, or
        # an abandoned one would never be collected and stopped.
        def post(message: tuple[str, object]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, message)
            except RuntimeError:  # the loop is closed: nobody will read, so stop
                stopping.set()

        self._queue = queue
        self._room = threading.Semaphore(AHEAD)
        self._stopping = stopping
        self._interrupt = interrupt
        self._finished = False  # the thread's last message was read
        self._closing: asyncio.Future[None] | None = None
        threading.Thread(
            target=_pump,
            args=(source, post, self._room, stopping, on_exit),
            name=name,
            daemon=True,
        ).start()

    def __aiter__(self) -> OffLoop[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        try:
            kind, value = await self._queue.get()
        except BaseException:
            # Cancelled while waiting: stop the source and wait for its clean-up.
            await self.aclose()
            raise
        if kind == _ITEM:
            self._room.release()
            return value  # type: ignore[return-value]
        self._finished = True
        if kind == _ERROR:
            assert isinstance(value, BaseException)
            raise value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the source now if it is still running, and wait for its clean-up, even
        through further cancels (a child half reaped must not be abandoned). Safe to
        call more than once, and from several tasks at once."""
        if self._finished:
            return
        if self._closing is None:
            self._stop()
            self._closing = asyncio.ensure_future(self._drain())
        cancelled = False
        while not self._closing.done():
            try:
                await asyncio.shield(self._closing)
            except asyncio.CancelledError:
                if self._closing.cancelled():  # the loop's own shutdown cancelled it
                    self._closing = asyncio.ensure_future(self._drain())
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def _stop(self) -> None:
        self._stopping.set()
        self._room.release()  # a pump waiting for room sees the stop
        self._interrupt()

    async def _drain(self) -> None:
        """Read until the thread's last message. A cancelled read loses nothing
        (``Queue.get`` gives its item back), so the next pass simply reads again."""
        while not self._finished:
            kind, _ = await self._queue.get()
            if kind == _ITEM:
                self._room.release()
            else:
                self._finished = True

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: stop the source; its thread
        # closes it and frees what it holds on its own.
        if not self._finished and self._closing is None:
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing to stop
                self._stop()


def _pump(
    source: Iterator[T],
    post: Callable[[tuple[str, object]], None],
    room: threading.Semaphore,
    stopping: threading.Event,
    on_exit: Callable[[], None] | None,
) -> None:
    """The thread: ``source``'s items, then one last message (the end or the error).
    A function, not a method, for the same reason ``post`` holds no ``OffLoop``."""
    final: tuple[str, object] = (_END, None)
    try:
        for item in source:
            room.acquire()
            if stopping.is_set():
                break
            post((_ITEM, item))
    except BaseException as error:  # handed to the consumer, raised there
        final = (_ERROR, error)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as error:
                if final[0] == _END:
                    final = (_ERROR, error)
        if on_exit is not None:
            on_exit()
        post(final)


def iterate_off_loop(
    source: Iterator[T], interrupt: Callable[[], None], *, name: str = "jazzmine-call"
) -> OffLoop[T]:
    """``source`` iterated in its own thread (see ``OffLoop``)."""
    return OffLoop(source, interrupt, name=name)


async def run_off_loop(work: Callable[[], T], interrupt: Callable[[], None]) -> T:
    """``work()`` in its own thread, with the same stop policy as a stream."""

    def once() -> Iterator[T]:
        yield work()

    results = [result async for result in OffLoop(once(), interrupt)]
    return results[0]
