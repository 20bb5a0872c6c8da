"""The thread bridge under asyncio: order, errors, early stops and cancels, and no thread
left behind."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from jazzmine.local.call.bridge import AHEAD, iterate_off_loop, run_off_loop


class Blocking:
    """A source that blocks on each item until released, as a pipe read does."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.wake = threading.Event()
        self.interrupted = threading.Event()
        self.closed = threading.Event()
        self.thread_name = ""

    def __iter__(self) -> Iterator[int]:
        self.thread_name = threading.current_thread().name
        try:
            for index in range(self.count):
                if self.interrupted.is_set():
                    return
                yield index
                self.wake.wait(5)
        finally:
            self.closed.set()

    def interrupt(self) -> None:
        self.interrupted.set()
        self.wake.set()


def test_items_arrive_in_order_from_another_thread() -> None:
    source = Blocking(200)
    source.wake.set()

    async def main() -> list[int]:
        return [item async for item in iterate_off_loop(iter(source), source.interrupt)]

    assert asyncio.run(main()) == list(range(200))
    assert source.thread_name != threading.current_thread().name
    assert source.closed.is_set()


def test_an_error_in_the_source_is_raised_to_the_consumer_after_its_items() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise ValueError("boom")

    async def main() -> list[str]:
        got: list[str] = []
        with pytest.raises(ValueError, match="boom"):
            async for item in iterate_off_loop(failing(), lambda: None):
                got.append(item)
        return got

    assert asyncio.run(main()) == ["a"]


def test_closing_early_interrupts_and_waits_for_the_clean_up() -> None:
    source = Blocking(1000)

    async def main() -> None:
        stream = iterate_off_loop(iter(source), source.interrupt)
        assert await stream.__anext__() == 0
        await stream.aclose()  # type: ignore[attr-defined]
        # aclose returned only after the source's finally ran in its thread.
        assert source.interrupted.is_set()
        assert source.closed.is_set()

    asyncio.run(main())


def test_a_cancelled_consumer_still_waits_for_the_clean_up() -> None:
    source = Blocking(1000)

    async def consume() -> None:
        async for _ in iterate_off_loop(iter(source), source.interrupt):
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert source.closed.is_set()

    asyncio.run(main())


def test_the_thread_runs_at_most_AHEAD_items_ahead_of_a_slow_consumer() -> None:
    produced: list[int] = []

    def eager() -> Iterator[int]:
        for index in range(AHEAD * 4):
            produced.append(index)
            yield index

    async def main() -> None:
        stream = iterate_off_loop(eager(), lambda: None)
        await stream.__anext__()
        await asyncio.sleep(0.2)
        assert len(produced) <= AHEAD + 2
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_the_event_loop_keeps_running_while_the_source_blocks() -> None:
    ticked = threading.Event()

    def slow() -> Iterator[bool]:
        # Blocks until the loop has ticked ten times meanwhile, which a blocked loop
        # never does (a wait on an event, not a fixed sleep: the machine may be busy).
        yield ticked.wait(60)

    async def main() -> list[bool]:
        async def ticker() -> None:
            for _ in range(10):
                await asyncio.sleep(0.01)
            ticked.set()

        ticking = asyncio.create_task(ticker())
        items = [item async for item in iterate_off_loop(slow(), lambda: None)]
        await ticking
        return items

    assert asyncio.run(main()) == [True]


def test_run_off_loop_returns_the_result_and_raises_the_error() -> None:
    async def main() -> None:
        assert await run_off_loop(lambda: 42, lambda: None) == 42
        with pytest.raises(KeyError):
            await run_off_loop(lambda: {}["x"], lambda: None)

    asyncio.run(main())


def _bridge_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "jazzmine-call"]


def test_no_thread_is_left_behind() -> None:
    async def main() -> None:
        for _ in range(20):
            source = Blocking(10)
            stream = iterate_off_loop(iter(source), source.interrupt)
            await stream.__anext__()
            await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while _bridge_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _bridge_threads() == []
