"""Looking at processes from outside: liveness, open descriptors, listening sockets,
argv exposure; waiting on a condition; and whether an event loop kept running.

Everything looks at this process and its descendants only: the tests share the machine
with other programs, whose processes and sockets are none of their business.

Plain Python (no pytest), shared by the tests and bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
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


def wait_until(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Whether ``condition`` became true within ``seconds``: a generous bound for
    something that should take a moment, never a measurement."""
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True


def wait_gone(pid: int, seconds: float = 60.0) -> bool:
    """Whether ``pid`` ended within ``seconds``."""
    return wait_until(lambda: not process_alive(pid), seconds)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def own_processes() -> set[int]:
    """This process and its live descendants."""
    return {os.getpid(), *descendants(os.getpid())}


def socket_inodes(pids: set[int]) -> set[str]:
    """The inodes of the sockets ``pids`` hold open."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        found.add(target[len("socket:[") : -1])
    return found


def own_tcp_listeners() -> set[str]:
    """Listening TCP sockets (address/inode) held by this process or its descendants;
    another program's listeners are not counted."""
    inodes = socket_inodes(own_processes())
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    found.add(fields[1] + "/" + fields[9])
    return found


class ArgvScanner:
    """Counts how often ``secret`` shows in the argv of this process's descendants while
    the block runs.

    ``control`` is a string the child's argv does hold (say the model path): counting it
    too shows the scans saw the child, so no sighting of the secret means something
    (another program's process with the same model never counts for it).
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
            for pid in descendants(os.getpid()):
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
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


def run_python(source: str, *, limit: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``source`` in a fresh interpreter importing what this one imports; a hang is an
    AssertionError after ``limit`` seconds, never a pass."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(source)],
            capture_output=True,
            text=True,
            timeout=limit,
            env=env,
        )
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(
            f"the program did not finish within {limit} s: {hung.stderr!r}"
        ) from None
