"""Async iteration of a blocking stream that runs in a thread of its own.

Every call is written once, as blocking code: a child's pipes or a server's socket are
read in one place, and the stop policy lives with them. ``agenerate`` and ``astream`` run
that same code in a thread and hand its pieces to the event loop, so the loop never blocks
on a read, a template render or a probe, and sync and async cannot drift apart.

A cancelled or closed consumer follows one policy (trio's): deliver the interrupt (which
ends the child or the request), then still wait for the thread to finish its clean-up,
so nothing outlives the call. The thread is not a pool's: a slow call never starves
another, and waiting for a slot happens on the loop before the thread starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

# Pieces the thread may run ahead of the consumer: the pipe's own backpressure, kept.
AHEAD = 64
_ITEM, _END, _ERROR = "item", "end", "error"


async def iterate_off_loop(
    source: Iterator[T], interrupt: Callable[[], None], *, name: str = "jazzmine-call"
) -> AsyncGenerator[T, None]:
    """Yield what ``source`` yields; ``source`` runs (and is closed) in its own thread.

    ``interrupt`` must be safe to call from any thread and make a blocked ``next()`` on
    ``source`` return soon; it is called when the consumer stops early.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    room = threading.Semaphore(AHEAD)
    stopping = threading.Event()

    def post(message: tuple[str, object]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, message)
        except RuntimeError:  # the loop is closed: nobody will read, so stop
            stopping.set()

    def pump() -> None:
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
            post(final)

    threading.Thread(target=pump, name=name, daemon=True).start()
    finished = False
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                room.release()
                yield value  # type: ignore[misc]
                continue
            finished = True
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            return
    finally:
        if not finished:
            stopping.set()
            room.release()  # a pump waiting for room sees the stop
            interrupt()
            await _drain_until_final(queue, room)


async def _drain_until_final(
    queue: asyncio.Queue[tuple[str, object]], room: threading.Semaphore
) -> None:
    """Wait for the thread's last message, even through further cancels: the clean-up
    it is doing (reaping a child, closing a socket) must not be abandoned halfway."""
    cancelled = False
    getter: asyncio.Future[tuple[str, object]] | None = None
    while True:
        if getter is None:
            # One pending get across cancels: a fresh one each time would lose a message.
            getter = asyncio.ensure_future(queue.get())
        try:
            kind, _ = await asyncio.shield(getter)
        except asyncio.CancelledError:
            cancelled = True
            continue
        getter = None
        if kind == _ITEM:
            room.release()
            continue
        break
    if cancelled:
        raise asyncio.CancelledError


async def run_off_loop(work: Callable[[], T], interrupt: Callable[[], None]) -> T:
    """``work()`` in its own thread, with the same stop policy as a stream."""

    def once() -> Iterator[T]:
        yield work()

    results = [result async for result in iterate_off_loop(once(), interrupt)]
    return results[0]
