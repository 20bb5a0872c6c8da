"""The concurrency limit, from threads and event loops: order, deadlines, hand-over."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from helpers.probes import wait_until

from jazzmine.local.call.limits import ConcurrencyLimit


def test_at_most_limit_holders_at_once_from_threads() -> None:
    limit = ConcurrencyLimit(2)
    inside, peak, lock = 0, 0, threading.Lock()
    # holders leave in pairs: two are surely inside at once, however slow the machine
    pair = threading.Barrier(2)

    def work() -> None:
        nonlocal inside, peak
        with limit.hold(None):
            with lock:
                inside += 1
                peak = max(peak, inside)
            pair.wait(timeout=60)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2 and limit.in_use == 0


def test_waiters_are_served_in_arrival_order() -> None:
    limit = ConcurrencyLimit(1)
    order: list[int] = []
    gate = limit.hold(None)
    gate.__enter__()
    threads = []
    for index in range(5):
        thread = threading.Thread(target=lambda i=index: _take(limit, order, i))
        thread.start()
        threads.append(thread)
        # each queues before the next arrives (waited for: a busy machine may be slow)
        assert wait_until(lambda n=index + 1: len(limit._waiters) == n)
    gate.__exit__(None, None, None)
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4]


def _take(limit: ConcurrencyLimit, order: list[int], index: int) -> None:
    with limit.hold(None):
        order.append(index)


def test_a_wait_past_the_deadline_raises_timeout_and_leaves_no_waiter() -> None:
    limit = ConcurrencyLimit(1)
    with limit.hold(None):
        started = time.monotonic()
        with pytest.raises(TimeoutError), limit.hold(time.monotonic() + 0.1):
            pass
        assert 0.05 < time.monotonic() - started < 30  # a bound, not a measurement
    with limit.hold(time.monotonic() + 0.1):  # the timed-out waiter holds nothing
        assert limit.in_use == 1


def test_async_waiters_share_the_limit_with_threads() -> None:
    limit = ConcurrencyLimit(1)
    held = threading.Event()
    release = threading.Event()

    def thread_holder() -> None:
        with limit.hold(None):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=thread_holder)
    thread.start()
    assert held.wait(60)

    async def main() -> float:
        started = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, release.set)
        async with limit.ahold(None):
            return time.monotonic() - started

    waited = asyncio.run(main())
    thread.join()
    assert waited >= 0.09 and limit.in_use == 0


def test_a_cancelled_async_waiter_gives_back_nothing_it_did_not_take() -> None:
    limit = ConcurrencyLimit(1)

    async def main() -> None:
        async with limit.ahold(None):
            waiter = asyncio.create_task(_ahold(limit))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert limit.in_use == 0
        async with limit.ahold(time.monotonic() + 1):
            assert limit.in_use == 1

    asyncio.run(main())


async def _ahold(limit: ConcurrencyLimit) -> None:
    async with limit.ahold(None):
        pass


def test_the_limit_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)
