"""Nothing waits forever: cancelled async consumers, abandoned async streams, streams kept
but unread, and first calls that all probe the binary at once.

Hang-shaped cases run in a child interpreter with a time limit, or assert how long they
took: a regression fails here, it never passes because a timeout fired.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.probes import run_python

from jazzmine.local import LLMTimeoutError, LocalLLM, MessagePart, MockTransport
from jazzmine.local.call import limits as limits_module
from jazzmine.local.mock import reply

pytestmark = pytest.mark.faults
HELLO = [MessagePart("user", "hello")]
SLOW_MOCK = """
    import asyncio, time
    from jazzmine.local import LocalLLM, MessagePart, MockTransport
    from jazzmine.local.mock import reply
    llm = LocalLLM(transport=MockTransport(lambda request: reply(*["w "] * 50, delay=0.05)))
    HELLO = [MessagePart("user", "hello")]
"""


def test_cancelling_an_astream_consumer_mid_piece_lets_the_loop_shut_down() -> None:
    """The consumer is cancelled while handling a piece (not while waiting for one): the
    loop's shutdown used to spin forever on a getter it had itself cancelled."""
    started = time.monotonic()
    result = run_python(
        SLOW_MOCK
        + """
    async def consume():
        async for _ in llm.astream(HELLO):
            await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print("cancelled")

    asyncio.run(main())
    print("shut down")
    """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cancelled", "shut", "down"]
    assert result.stderr == ""
    assert time.monotonic() - started < 20


def test_a_task_left_running_at_shutdown_is_cancelled_cleanly() -> None:
    """asyncio.run cancels a task still reading an astream when main returns."""
    result = run_python(
        SLOW_MOCK
        + """
    async def consume():
        async for _ in llm.astream(HELLO):
            await asyncio.sleep(10)

    async def main():
        asyncio.ensure_future(consume())
        await asyncio.sleep(0.3)

    asyncio.run(main())
    print("shut down")
    """
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "shut down", "")


def test_breaking_out_of_an_astream_without_aclose_prints_nothing() -> None:
    result = run_python(
        SLOW_MOCK
        + """
    async def main():
        async for _ in llm.astream(HELLO):
            break
        async for _ in llm.astream(HELLO).events():
            break
        print((await llm.agenerate(HELLO)).text.count("w"))

    asyncio.run(main())
    """
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "50", "")


def _slow_llm(words: int = 40, **options: object) -> LocalLLM:
    return LocalLLM(
        transport=MockTransport(lambda request: reply(*["w "] * words, delay=0.02)),
        **options,  # type: ignore[arg-type]
    )


def test_a_call_queued_behind_an_unread_stream_times_out_naming_it() -> None:
    llm = _slow_llm(timeout=1.0)
    kept = llm.stream(HELLO)  # this line is named in the error
    opened_line = sys._getframe().f_lineno - 1
    for _, _piece in zip(range(3), kept, strict=False):
        pass
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as raised:
        llm.generate(HELLO)
    assert time.monotonic() - started < 3
    message = str(raised.value)
    assert "waiting for a free slot" in message
    assert f"stream() opened at {sys._getframe().f_code.co_filename}:{opened_line}" in message
    kept.close()
    assert llm.generate(HELLO).text.count("w") == 40  # the slot is free again


def test_an_async_call_queued_behind_an_unread_stream_times_out_too() -> None:
    import asyncio

    # More pieces than the bridge buffers ahead: the unread stream's run cannot finish.
    llm = _slow_llm(words=400)

    async def main() -> str:
        kept = llm.astream(HELLO)
        await kept.__anext__()
        llm.timeout = 1.0  # for the queued call only: the kept stream has none
        started = time.monotonic()
        with pytest.raises(LLMTimeoutError) as raised:
            await llm.agenerate(HELLO)
        assert time.monotonic() - started < 3
        await kept.aclose()
        return str(raised.value)

    assert "astream() opened at" in asyncio.run(main())


def test_a_wait_without_timeout_warns_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits_module, "SLOT_WAIT_NOTICE", 0.2)
    llm = _slow_llm()
    kept = llm.stream(HELLO)
    next(kept)
    answered: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        waiter = threading.Thread(target=lambda: answered.append(llm.generate(HELLO).text))
        waiter.start()
        give_up = time.monotonic() + 10
        while not caught and time.monotonic() < give_up:
            time.sleep(0.02)
        assert caught, "the queued call never said what it waits for"
        assert answered == []  # still queued: the slot is the unread stream's
        kept.close()
        waiter.join(10)
    assert not waiter.is_alive()
    assert answered and answered[0].count("w") == 40
    message = str(caught[0].message)
    assert "waited 0.2 s for a free slot" in message and "stream() opened at" in message


PROBED = """
import os, sys, time
log = sys.argv[0] + ".log"  # the probe runs with the parent's environment
with open(log, "a") as f:
    f.write(("help" if "--help" in sys.argv else "run") + f" {os.getpid()} start\\n")
time.sleep(0.4)
if "--help" not in sys.argv:
    sys.stdout.write("done")
with open(log, "a") as f:
    f.write(f"- {os.getpid()} end\\n")
"""


def _peak(log: Path) -> int:
    """The most processes the log shows running at once."""
    running = peak = 0
    for line in log.read_text().splitlines():
        running += 1 if line.endswith("start") else -1
        peak = max(peak, running)
    return peak


def test_first_calls_share_one_probe_and_never_exceed_max_concurrency(
    make_script: Callable[..., str], tmp_path: Path
) -> None:
    binary = make_script("probed-binary", PROBED)
    log = Path(binary + ".log")
    llm = LocalLLM(binary_path=binary, model="fake", max_concurrency=2)
    answers: list[str] = []
    callers = [
        threading.Thread(target=lambda: answers.append(llm.generate(HELLO).text)) for _ in range(6)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert answers == ["done"] * 6
    started = [line.split()[0] for line in log.read_text().splitlines() if line.endswith("start")]
    assert started.count("help") == 1
    assert started.count("run") == 6
    assert _peak(log) <= 2
