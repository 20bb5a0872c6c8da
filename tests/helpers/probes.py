"""Looking at processes from outside: liveness, open descriptors, argv exposure; and
whether an event loop kept running.

Plain Python (no pytest), shared by the tests and bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "State:\tZ" not in status


def descendants(root: int) -> set[int]:
    """Live processes below ``root`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if process_alive(pid)}


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class ArgvScanner:
    """Counts how often ``secret`` shows in any process's argv while the block runs.

    ``control`` is a string the child's argv does hold (say the model path): counting it
    too shows the scans saw the child, so no sighting of the secret means something.
    """

    def __init__(self, secret: str, control: str | None = None) -> None:
        self.secret = secret.encode()
        self.control = control.encode() if control is not None else None
        self.seen = 0
        self.control_seen = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._scan, daemon=True)

    def __enter__(self) -> ArgvScanner:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _scan(self) -> None:
        while not self._done.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    with contextlib.suppress(OSError):
                        argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                        self.seen += self.secret in argv
                        self.control_seen += self.control is not None and self.control in argv
            time.sleep(0.01)


def environment_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def children_running(binary: str) -> list[int]:
    """This process's descendants that run ``binary``."""
    found = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(binary):
                found.append(pid)
    return found


async def loop_ticks_during(work: Awaitable[object]) -> int:
    """How many 10 ms ticks the event loop ran while ``work`` was awaited: a loop that
    something blocked counts almost none."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await work
    finally:
        task.cancel()
    return ticks
