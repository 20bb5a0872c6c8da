"""Child processes with exactly one owner: spawn, drain both pipes, stop, reap.

The only module that touches ``subprocess`` and ``asyncio.subprocess``. Every child runs
in a session (process group) of its own, so stopping it also stops whatever it started;
stdin is closed so nothing can wait for input; stdout and stderr are drained together
so neither pipe can fill and block the child. Leaving the ``with`` block always reaps
the child, whatever ended the block: normal exit, an exception, a timeout, a cancel.
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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

# Long enough for llama.cpp to flush its last lines after SIGTERM, short enough that a
# cancelled call has its child gone within a second.
GRACE_SECONDS = 0.5
READ_SIZE = 65536
# stderr kept per call; a flood beyond this keeps its newest part (errors come last).
STDERR_LIMIT = 4 * 1024 * 1024


class DeadlineExceeded(Exception):
    """The child did not finish before the caller's deadline."""


@dataclass(frozen=True)
class ExitStatus:
    returncode: int
    stderr: str

    @property
    def signal_number(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


class StderrBuffer:
    def __init__(self) -> None:
        self._data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - STDERR_LIMIT
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def text(self) -> str:
        body = self._data.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} earlier bytes of stderr dropped ...]\n{body}"
        return body


# Children alive right now, so interpreter exit can stop the ones whose owner never ran.
_live_groups: set[int] = set()
_live_lock = threading.Lock()


def _register(pid: int) -> None:
    with _live_lock:
        _live_groups.add(pid)


def _unregister(pid: int) -> None:
    with _live_lock:
        _live_groups.discard(pid)


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


def terminate_group(popen: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate the child's group, wait ``grace``, kill, reap; then kill what is left."""
    try:
        if popen.poll() is None:
            signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
    finally:
        signal_group(popen.pid, signal.SIGKILL)  # anything the child left behind


def _popen_options(env: Mapping[str, str] | None, pass_fds: Sequence[int]) -> dict[str, object]:
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "start_new_session": True,
        "close_fds": True,
        "pass_fds": tuple(pass_fds),
        "env": dict(env) if env is not None else None,
    }


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class ChildProcess:
    """A synchronous child owned by a ``with`` block."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self._argv = list(argv)
        self._env = env
        self._pass_fds = pass_fds
        self._stderr = StderrBuffer()
        self._popen: subprocess.Popen[bytes] | None = None
        self._selector: selectors.BaseSelector | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def __enter__(self) -> ChildProcess:
        self._popen = subprocess.Popen(self._argv, **_popen_options(self._env, self._pass_fds))  # type: ignore[call-overload]
        _register(self._popen.pid)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stdout_chunks(self, deadline: float | None) -> Iterator[bytes]:
        """Yield stdout as it arrives, draining stderr alongside, until both close."""
        popen = self._popen
        assert popen is not None and popen.stdout is not None and popen.stderr is not None
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(popen.stdout, selectors.EVENT_READ, "out")
            self._selector.register(popen.stderr, selectors.EVENT_READ, "err")
        selector = self._selector
        while selector.get_map():
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise DeadlineExceeded
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, READ_SIZE)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "err":
                    self._stderr.add(chunk)
                else:
                    yield chunk

    def interrupt(self, signum: int) -> None:
        """Ask the child to end now (its output is no longer wanted)."""
        assert self._popen is not None
        if self._popen.poll() is None:
            signal_group(self._popen.pid, signum)

    def wait(self, deadline: float | None) -> ExitStatus:
        """Drain what is left of both pipes, then reap; stdout left now is discarded."""
        assert self._popen is not None
        for _ in self.stdout_chunks(deadline):
            pass
        try:
            returncode = self._popen.wait(_remaining(deadline))
        except subprocess.TimeoutExpired:
            raise DeadlineExceeded from None
        return ExitStatus(returncode, self._stderr.text())

    def stderr_text(self) -> str:
        return self._stderr.text()

    def stop(self) -> None:
        """Terminate, give a grace period, kill, reap. Idempotent."""
        popen = self._popen
        if popen is None:
            return
        try:
            terminate_group(popen, GRACE_SECONDS)
        finally:
            if self._selector is not None:
                self._selector.close()
            for pipe in (popen.stdout, popen.stderr):
                if pipe is not None:
                    pipe.close()
            _unregister(popen.pid)


class AsyncChildProcess:
    """An asyncio child owned by an ``async with`` block."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self._argv = list(argv)
        self._env = env
        self._pass_fds = pass_fds
        self._stderr = StderrBuffer()
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> AsyncChildProcess:
        import asyncio

        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            **_popen_options(self._env, self._pass_fds),  # type: ignore[arg-type]
        )
        _register(self._process.pid)
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(READ_SIZE):
            self._stderr.add(chunk)

    async def stdout_chunks(self, deadline: float | None) -> AsyncIterator[bytes]:
        import asyncio

        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise DeadlineExceeded
            try:
                chunk = await asyncio.wait_for(process.stdout.read(READ_SIZE), left)
            except asyncio.TimeoutError:
                raise DeadlineExceeded from None
            if not chunk:
                return
            yield chunk

    def interrupt(self, signum: int) -> None:
        """Ask the child to end now (its output is no longer wanted)."""
        assert self._process is not None
        if self._process.returncode is None:
            signal_group(self._process.pid, signum)

    async def wait(self, deadline: float | None) -> ExitStatus:
        """Drain what is left of both pipes, then reap; stdout left now is discarded."""
        import asyncio

        assert self._process is not None and self._stderr_task is not None
        async for _ in self.stdout_chunks(deadline):
            pass
        try:
            returncode = await asyncio.wait_for(self._process.wait(), _remaining(deadline))
            await asyncio.wait_for(asyncio.shield(self._stderr_task), _remaining(deadline))
        except asyncio.TimeoutError:
            raise DeadlineExceeded from None
        return ExitStatus(returncode, self._stderr.text())

    def stderr_text(self) -> str:
        return self._stderr.text()

    async def stop(self) -> None:
        """Terminate, grace, kill, reap; a cancel arriving meanwhile turns into a kill."""
        import asyncio

        process = self._process
        if process is None:
            return
        try:
            if process.returncode is None:
                signal_group(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(process.wait()), GRACE_SECONDS)
                except asyncio.TimeoutError:
                    signal_group(process.pid, signal.SIGKILL)
                    await asyncio.shield(process.wait())
        finally:
            # Runs on cancel too: SIGKILL cannot be ignored, and asyncio's child watcher
            # reaps the child even when nobody awaits it any more.
            signal_group(process.pid, signal.SIGKILL)
            if self._stderr_task is not None and not self._stderr_task.done():
                self._stderr_task.cancel()
            # Close the pipes now rather than when the garbage collector gets to them.
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
            _unregister(process.pid)
