"""A test that ran into its per-test timeout fails, whatever the code under test did.

pytest-timeout raises inside the test, in whatever frame is running when its alarm
fires. Code under test may swallow that: a coroutine run by ``asyncio.gather(...,
return_exceptions=True)`` (which ``asyncio.run``'s shutdown also does) turns it into a
result, and the test would pass after hanging for its whole timeout. The guard notes
that the alarm fired, and a phase that then reports a pass fails instead. (The call's
duration cannot tell: the alarm is armed before setup, so a call cut off by it may last
less than the timeout.)
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from typing import Any

import pytest

_FIRED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, Any, None]:
    yield
    # the signal method's handler raises in the test; the thread method ends the process
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGALRM)
    if not callable(handler):
        return

    def noted(signum: int, frame: Any) -> None:
        item.stash[_FIRED] = True
        handler(signum, frame)

    signal.signal(signal.SIGALRM, noted)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if item.stash.get(_FIRED, False) and report.passed and call.when != "teardown":
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} ran into its timeout ({call.duration:.1f} s in {call.when}), "
            "and the code under test swallowed pytest-timeout's exception"
        )
