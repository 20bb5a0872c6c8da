"""A first-come, first-served limit on calls in flight, usable from threads and event loops.

One ``LocalLLM`` may be called from sync code and from several event loops at once, so
neither ``threading.Semaphore`` nor ``asyncio.Semaphore`` alone fits. Waiters queue in
arrival order; a released permit is handed straight to the first waiter. The wait counts
against the call's deadline.

A permit remembers who holds it (where the call or stream was opened): a stream kept but
no longer read holds its slot, and a call queued behind it must say what it waits for. A
wait with no deadline warns once after ``SLOT_WAIT_NOTICE`` seconds, naming the holders;
a wait that runs out of time says the same in its error.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from .. import system

if TYPE_CHECKING:
    import asyncio


# Seconds a call with no timeout waits for a slot before it warns what it waits for.
SLOT_WAIT_NOTICE = 10.0


class SlotWaitTimeout(TimeoutError):
    """The call's deadline passed while it waited for a slot; says who held them."""


class Permit:
    """One slot, held by ``holder`` (where its call was opened); released once."""

    def __init__(self, limit: ConcurrencyLimit, holder: str) -> None:
        self._limit: ConcurrencyLimit | None = limit
        self.holder = holder
        self.since = time.monotonic()

    def release(self) -> None:
        limit, self._limit = self._limit, None
        if limit is not None:
            limit._release(self)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


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
        self._held: dict[int, Permit] = {}
        self._waiters: deque[
            threading.Event | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = deque()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self.limit - self._free

    @contextlib.contextmanager
    def hold(self, deadline: float | None, holder: str = "a call") -> Iterator[Permit]:
        with self.acquire(deadline, holder) as permit:
            yield permit

    @contextlib.asynccontextmanager
    async def ahold(self, deadline: float | None, holder: str = "a call") -> AsyncIterator[Permit]:
        with await self.aacquire(deadline, holder) as permit:
            yield permit

    def acquire(self, deadline: float | None, holder: str = "a call") -> Permit:
        """A permit, waited for until ``deadline``; past it ``SlotWaitTimeout``."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return self._grant_to(holder)
            granted = threading.Event()
            self._waiters.append(granted)
        if self._wait(granted, deadline):
            with self._lock:
                return self._grant_to(holder)
        with self._lock:
            if granted.is_set():  # granted just as we gave up: keep it
                return self._grant_to(holder)
            self._waiters.remove(granted)
        raise SlotWaitTimeout(self._describe_holders())

    def _wait(self, granted: threading.Event, deadline: float | None) -> bool:
        if deadline is not None:
            return granted.wait(max(0.0, deadline - time.monotonic()))
        if not granted.wait(SLOT_WAIT_NOTICE):
            self._notice()
            granted.wait()
        return True

    async def aacquire(self, deadline: float | None, holder: str = "a call") -> Permit:
        import asyncio  # loaded by async use only (see the package docstring)

        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return self._grant_to(holder)
            granted: asyncio.Future[None] = loop.create_future()
            entry = (loop, granted)
            self._waiters.append(entry)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            if left is None:
                try:
                    await asyncio.wait_for(asyncio.shield(granted), SLOT_WAIT_NOTICE)
                except asyncio.TimeoutError:
                    self._notice()
                    await granted
            else:
                await asyncio.wait_for(asyncio.shield(granted), left)
        except BaseException as error:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    owned = False
                else:
                    owned = True  # the permit was handed over as we gave up
            if owned:
                self._release(None)
            if isinstance(error, asyncio.TimeoutError):
                raise SlotWaitTimeout(self._describe_holders()) from None
            raise
        with self._lock:
            return self._grant_to(holder)

    def _grant_to(self, holder: str) -> Permit:
        """Record the slot just taken (the lock is held)."""
        permit = Permit(self, holder)
        self._held[id(permit)] = permit
        return permit

    def _describe_holders(self) -> str:
        now = time.monotonic()
        with self._lock:
            holders = [f"{p.holder} ({now - p.since:.1f} s ago)" for p in self._held.values()]
        held = "; ".join(holders) or "calls that were finishing"
        return (
            f"all {self.limit} slots (max_concurrency={self.limit}) were held by: {held}. "
            "A stream holds its slot until it is read to its end or closed"
        )

    def _notice(self) -> None:
        warnings.warn(
            f"a LocalLLM call has waited {SLOT_WAIT_NOTICE:g} s for a free slot: "
            f"{self._describe_holders()}",
            RuntimeWarning,
            stacklevel=2,
        )

    def _release(self, permit: Permit | None) -> None:
        with self._lock:
            if permit is not None and self._held.pop(id(permit), None) is not permit:
                return  # taken before a fork reset the limit: not this limit's any more
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


system.at_fork_in_child(_after_fork_in_child)
