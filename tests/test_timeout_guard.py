"""The suite's promise that a test which hangs fails: checked on a test that swallows
its own timeout, run by a child pytest with and without the guard."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SWALLOWING = """
import asyncio
import time

import pytest


async def stuck():
    time.sleep(4)  # blocks inside the task: the alarm is raised in this coroutine


@pytest.mark.timeout(1)
def test_gathered_with_return_exceptions():
    # the timeout's exception becomes one of gather's results: nothing raises
    async def main():
        return await asyncio.gather(stuck(), return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 1


@pytest.mark.timeout(timeout=1)
def test_caught_by_the_code_under_test():
    try:
        time.sleep(4)
    except BaseException:
        pass
"""


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 100
    return done


@pytest.mark.timeout(150)
def test_a_swallowed_timeout_still_fails_the_test(tmp_path: Path) -> None:
    bare, guarded = tmp_path / "bare", tmp_path / "guarded"
    for folder in (bare, guarded):
        folder.mkdir()
        (folder / "test_swallow.py").write_text(textwrap.dedent(SWALLOWING))
    (guarded / "conftest.py").write_text(
        "from helpers.timeout_guard import (  # noqa: F401\n"
        "    pytest_runtest_makereport,\n"
        "    pytest_timeout_set_timer,\n"
        ")\n"
    )
    # without the guard both tests pass after hanging: the swallowing is real
    control = _run(bare)
    assert control.returncode == 0, control.stdout + control.stderr
    assert "2 passed" in control.stdout, control.stdout
    found = _run(guarded)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "2 failed" in found.stdout, found.stdout
    assert found.stdout.count("swallowed pytest-timeout") == 2, found.stdout
