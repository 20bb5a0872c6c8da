"""A first-come, first-served limit on calls in flight, usable from threads and event loops.

One ``LocalLLM`` may be called from sync code and from several event loops at once, so
neither ``threading.Semaphore`` nor ``asyncio.Semaphore`` alone fits. Waiters queue in
arrival order; a released permit is handed straight to the first waiter. The wait counts
against the call's deadline.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


class ConcurrencyLimit:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {limit}")
        self.limit = limit
        self._reset()
        _limits.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._free = self.limit
        self._waiters: deque[
            threading.Event | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = deque()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self.limit - self._free

    @contextlib.contextmanager
    def hold(self, deadline: float | None) -> Iterator[None]:
        if not self._acquire(deadline):
            raise TimeoutError
        try:
            yield
        finally:
            self._release()

    @contextlib.asynccontextmanager
    async def ahold(self, deadline: float | None) -> AsyncIterator[None]:
        await self._aacquire(deadline)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, deadline: float | None) -> bool:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            granted = threading.Event()
            self._waiters.append(granted)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if granted.wait(left):
            return True
        with self._lock:
            if granted.is_set():  # granted just as we gave up: keep it
                return True
            self._waiters.remove(granted)
        return False

    async def _aacquire(self, deadline: float | None) -> None:
        import asyncio  # loaded by async use only (see the package docstring)

        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            granted: asyncio.Future[None] = loop.create_future()
            entry = (loop, granted)
            self._waiters.append(entry)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(asyncio.shield(granted), left)
        except BaseException:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    owned = False
                else:
                    owned = True  # the permit was handed over as we gave up
            if owned:
                self._release()
            raise

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                loop, granted = waiter
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_grant, granted)
                    return
            self._free += 1


def _grant(granted: asyncio.Future[None]) -> None:
    if not granted.done():
        granted.set_result(None)


# A forked child starts with every limit free: the calls that held permits in the parent
# are not running in the child, and would never give them back.
_limits: weakref.WeakSet[ConcurrencyLimit] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for limit in list(_limits):
        limit._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
