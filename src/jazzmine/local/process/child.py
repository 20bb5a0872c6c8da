"""Child processes with exactly one owner: spawn, drain both pipes, stop, reap.

The only module that touches ``subprocess``. Every child, per-call or a kept server, is a
``ChildProcess``: it runs in a session (process group) of its own, so stopping it also
stops whatever it started; stdin is closed so nothing can wait for input; stderr is
drained by a thread while stdout is read, so neither pipe can fill and block the child;
and one stop policy (terminate the group, a grace period, kill, reap) runs on every path.
A child started with ``dies_with_parent`` is killed if this process dies (``launcher``:
the kernel on Linux, a lifeline elsewhere), so it is started from a lasting thread
(``spawner``). A forked copy of
this process never signals its parent's children. Blocking code only: asyncio callers
reach it through ``bridge``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .. import system
from ..errors import DeadlineExceeded
from . import launcher, spawner

# Long enough for llama.cpp to flush its last lines after SIGTERM, short enough that a
# cancelled call has its child gone within a second.
GRACE_SECONDS = 0.5
READ_SIZE = 65536
# stderr kept per child; a flood beyond this keeps its newest part (errors come last).
STDERR_LIMIT = 4 * 1024 * 1024
# How long a child's stderr may stay open after it exited (a grandchild holding it).
STDERR_CLOSE_WAIT = 2.0


@dataclass(frozen=True)
class ExitStatus:
    returncode: int
    stderr: str

    @property
    def signal_number(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


class StderrBuffer:
    """A child's stderr, bounded; written by the drain thread, read by anyone."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._lock = threading.Lock()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            excess = len(self._data) - STDERR_LIMIT
            if excess > 0:
                del self._data[:excess]
                self.dropped += excess

    def text(self) -> str:
        with self._lock:
            body = self._data.decode("utf-8", errors="replace")
            dropped = self.dropped
        if dropped:
            return f"[... {dropped} earlier bytes of stderr dropped ...]\n{body}"
        return body


# Children alive right now, so interpreter exit can stop the ones whose owner never ran.
_live_groups: set[int] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        groups = list(_live_groups)
    for group in groups:
        signal_group(group, signal.SIGKILL)


def signal_group(group: int, signum: int) -> None:
    # The group id stays reserved while any member lives, so this never hits a stranger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's children: forget them (never signal them).
    (``spawner`` starts the child's own spawner thread.)"""
    global _live_lock
    _live_groups.clear()
    _live_lock = threading.Lock()


system.at_fork_in_child(_after_fork_in_child)


class ChildProcess:
    """One child owned by a ``with`` block (or ``start()``/``stop()``)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        read_stdout: bool = True,
        dies_with_parent: bool = False,
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._pass_fds = tuple(pass_fds)
        self._read_stdout = read_stdout
        self._dies_with_parent = dies_with_parent
        self._grace = grace
        self._stderr = StderrBuffer()
        self._popen: subprocess.Popen[bytes] | None = None
        self._stderr_thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._owner = os.getpid()

    # ---------- ownership ----------
    def _ours(self) -> bool:
        """False in a forked copy of the owner: the child is the parent's, not ours."""
        return self._popen is not None and self._owner == os.getpid()

    def start(self) -> ChildProcess:
        argv, pass_fds = self.argv, self._pass_fds
        if self._dies_with_parent:
            argv, launcher_fds = launcher.command(self.argv)
            pass_fds += launcher_fds

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self._read_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
                env=self._env,
            )

        self._owner = os.getpid()
        self._popen = spawner.run(spawn) if self._dies_with_parent else spawn()
        with _live_lock:
            _live_groups.add(self._popen.pid)
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(self._popen,), name="jazzmine-stderr", daemon=True
        )
        self._stderr_thread.start()
        return self

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """The one stop policy: terminate the group, grace, kill, reap. Idempotent."""
        popen = self._popen
        if popen is None:
            return
        if not self._ours():
            self._popen = None  # a forked copy: the parent's child is the parent's to stop
            return
        try:
            if popen.poll() is None:
                signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(self._grace)
                except subprocess.TimeoutExpired:
                    signal_group(popen.pid, signal.SIGKILL)
                    popen.wait()
        finally:
            signal_group(popen.pid, signal.SIGKILL)  # anything the child left behind
            self._join_stderr(STDERR_CLOSE_WAIT)
            if self._selector is not None:
                self._selector.close()
                self._selector = None
            for pipe in (popen.stdout, popen.stderr):
                if pipe is not None:
                    pipe.close()
            with _live_lock:
                _live_groups.discard(popen.pid)

    # ---------- state ----------
    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def running(self) -> bool:
        return self._ours() and self._popen is not None and self._popen.poll() is None

    def exited_within(self, seconds: float) -> bool:
        if self._popen is None or not self._ours():
            return True
        try:
            self._popen.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stderr_text(self) -> str:
        return self._stderr.text()

    # ---------- output ----------
    def _drain_stderr(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stderr is not None
        with contextlib.suppress(OSError, ValueError):  # closed under us by stop()
            while chunk := os.read(popen.stderr.fileno(), READ_SIZE):
                self._stderr.add(chunk)

    def _join_stderr(self, timeout: float | None) -> None:
        if self._stderr_thread is not None:
            self._stderr_thread.join(STDERR_CLOSE_WAIT if timeout is None else max(0, timeout))

    def stdout_chunks(self, deadline: float | None) -> Iterator[bytes]:
        """Yield stdout as it arrives, until it closes."""
        popen = self._popen
        assert popen is not None and popen.stdout is not None
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(popen.stdout, selectors.EVENT_READ)
        selector = self._selector
        while selector.get_map():
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise DeadlineExceeded
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, READ_SIZE)
                if not chunk:
                    selector.unregister(key.fileobj)
                else:
                    yield chunk

    def interrupt(self, signum: int) -> None:
        """From any thread: ask the child to end now (its output is no longer wanted)."""
        if self.running():
            assert self._popen is not None
            signal_group(self._popen.pid, signum)

    def wait(self, deadline: float | None) -> ExitStatus:
        """Drain what is left of stdout (discarded) and stderr, then reap."""
        assert self._popen is not None
        if self._read_stdout:
            for _ in self.stdout_chunks(deadline):
                pass
        try:
            returncode = self._popen.wait(remaining(deadline))
        except subprocess.TimeoutExpired:
            raise DeadlineExceeded from None
        self._join_stderr(remaining(deadline))
        return ExitStatus(returncode, self._stderr.text())
