"""The kept llama-server: one private child, shared, reused and always reaped.

One ``LlamaServer`` owns one ``llama-server`` child (a ``ChildProcess`` that dies with
this process). It listens only on a Unix socket in a private directory (0700, removed
when it stops) with ``--no-slots`` and ``--offline``, so no TCP port is opened and no
other local user can read prompts or replies. Instances of LocalLLM with the same server
binary, model and load options share one server (``registry``); it stops after
the last sharer closes, after ``keep_alive`` of idleness, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import ssl
import threading
import time
import weakref

import httpx

from ... import system
from ...errors import DeadlineExceeded, LLMInternalError
from ...process.child import ChildProcess
from ..config import llama_environment
from . import budget
from .key import ServerKey

SOCKET_NAME = "llama.sock"

START_TIMEOUT_SECONDS = 120.0
GRACE_SECONDS = 2.0


class LlamaServer:
    """One llama-server child and its private socket directory; the only owner of both."""

    def __init__(self, key: ServerKey) -> None:
        self.key = key
        self._env = dict(key.env) if key.env is not None else None
        self._lock = threading.RLock()
        self._child: ChildProcess | None = None
        self._directory: str | None = None
        self._owner = os.getpid()
        self._client: httpx.Client | None = None
        self.sharers = 0
        self.keep_alive: float = -1.0
        self.active = 0
        self._idle_timer: threading.Timer | None = None
        self.starts = 0
        # How many times the model budget stopped it for another server.
        self.evictions = 0
        # Who stopped the server on purpose, so a call it cut short can say so.
        self.ended_by: str | None = None
        _every_server.add(self)

    def _forget_after_fork(self) -> None:
        self._lock = threading.RLock()
        self._idle_timer = None  # its thread did not come along
        self.active = 0
        self._client = None  # its connections are the parent's sockets
        if self._child is not None:
            self._child.stop()  # forgets: a forked copy never signals the parent's child
            self._child = None
        self._directory = None

    # ---------- lifecycle ----------
    @property
    def socket_path(self) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, SOCKET_NAME)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def directory(self) -> str | None:
        return self._directory

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def exited_within(self, seconds: float) -> bool:
        return self._child is None or self._child.exited_within(seconds)

    def stderr_text(self) -> str:
        return self._child.stderr_text() if self._child is not None else ""

    @property
    def model_path(self) -> str:
        return self.key.model_path

    def ensure_started(self, deadline: float | None) -> None:
        with self._lock:
            if self.running():
                return
            if self._child is not None:
                self._reap()  # it died: start a fresh one
            self._start(deadline)

    def _start(self, deadline: float | None) -> None:
        # Room in the process's model budget first: this may stop an idle server, or wait.
        size = budget.estimate_mib(self.key.model_path, self.key.context_per_slot * self.key.slots)
        budget.admit(self, size, deadline)
        # Mode 0700, and short enough for the socket path on every system (macOS: 104 bytes).
        self._directory = system.short_private_dir("jazzmine-server-", len(SOCKET_NAME))
        self._owner = os.getpid()
        child = ChildProcess(
            self.key.argv(self.socket_path),
            env=llama_environment(self._env),  # read at each start, as inheriting would
            read_stdout=False,
            dies_with_parent=True,
            grace=GRACE_SECONDS,
        )
        try:
            child.start()
        except BaseException:
            self._remove_directory()
            budget.unloaded(self)
            raise
        self._child = child
        _live_servers.add(self)
        self.starts += 1
        self.ended_by = None
        try:
            self._wait_ready(deadline)
        except BaseException:
            # Interrupted while loading (Ctrl-C, a cancel): a server left half-ready would
            # be taken as running by the next call and answer 503.
            self._reap()
            raise

    def _wait_ready(self, deadline: float | None) -> None:
        limit = time.monotonic() + START_TIMEOUT_SECONDS
        if deadline is not None:
            limit = min(limit, deadline)
        client = self.client()
        child = self._child
        assert child is not None
        while True:
            if not child.running():
                status = child.wait(time.monotonic() + 2.0)
                self._reap()
                stderr = status.stderr.strip()
                raise LLMInternalError(
                    f"llama-server exited with code {status.returncode} before the model was "
                    "loaded" + (f"; stderr:\n{stderr}" if stderr else ""),
                    stderr=status.stderr,
                    exit_code=status.returncode,
                )
            with contextlib.suppress(Exception):
                if client.get("/health", timeout=2.0).status_code == 200:
                    return
            if time.monotonic() >= limit:
                stderr = child.stderr_text()
                self._reap()
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded
                raise LLMInternalError(
                    f"llama-server did not load the model within {START_TIMEOUT_SECONDS:.0f} s",
                    stderr=stderr,
                )
            time.sleep(0.02)

    def stop(self, by: str | None = None) -> None:
        """Terminate, grace, kill, reap; remove the socket directory. Idempotent."""
        with self._lock:
            self._cancel_idle_timer()
            if self._child is not None and by is not None:
                self.ended_by = by
            self._reap()

    def evict_if_idle(self, by: str) -> bool:
        """Stop now if no call is in flight (the model budget needs the room). Never
        waits for this server's lock: its holder is starting it or beginning a call."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.active > 0:
                return False
            self._cancel_idle_timer()
            if self._child is not None:
                self.ended_by = by
                self.evictions += 1
            self._reap()
            return True
        finally:
            self._lock.release()

    def _reap(self) -> None:
        # The stderr of a stopped server stays readable: a call it cut short reports it.
        if self._child is not None:
            self._child.stop()
        _live_servers.discard(self)
        budget.unloaded(self)
        self._close_clients()
        self._remove_directory()

    def _remove_directory(self) -> None:
        # A forked copy forgets its parent's socket directory; only its maker removes it.
        if self._directory is not None and self._owner == os.getpid():
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None

    # ---------- idleness ----------
    def begin_request(self) -> None:
        with self._lock:
            self.active += 1
            self._cancel_idle_timer()
        budget.touch(self)

    def end_request(self) -> None:
        with self._lock:
            self.active -= 1
            if self.active == 0:
                self._start_idle_timer()
        budget.touch(self)  # the most recently used; a newcomer waiting for room re-checks

    def retire(self) -> None:
        """Stop once the calls in flight are done (at once if there are none): its last
        sharer moved to a server with larger slots, and nobody starts a call here again."""
        with self._lock:
            self.keep_alive = 0.0
            if self.active == 0:
                self._start_idle_timer()

    def _start_idle_timer(self) -> None:
        if self.keep_alive >= 0 and self.running():
            self._cancel_idle_timer()
            self._idle_timer = threading.Timer(self.keep_alive, self._stop_if_idle)
            self._idle_timer.daemon = True
            self._idle_timer.start()

    def _stop_if_idle(self) -> None:
        with self._lock:
            # A timer cancelled while it waited for the lock has been replaced: not its call.
            if self._idle_timer is threading.current_thread() and self.active == 0:
                self._idle_timer = None
                self._reap()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # ---------- HTTP over the Unix socket ----------
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                # Plain HTTP over a Unix socket; no proxy from the environment may reroute it.
                transport = httpx.HTTPTransport(uds=self.socket_path, verify=_no_tls())
                self._client = httpx.Client(
                    transport=transport,
                    base_url="http://llama-server",
                    timeout=None,
                    trust_env=False,
                )
            return self._client

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@functools.cache
def _no_tls() -> ssl.SSLContext:
    """An unused TLS context, made once: httpx builds one per transport even for
    ``verify=False`` (about 0.2 ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_live_servers: set[LlamaServer] = set()
_every_server: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child shares no server with its parent: the parent's servers, their
    sockets and connections stay the parent's. The child's instances start their own
    server on their next call (``running()`` is False for a parent's child)."""
    _live_servers.clear()
    for server in list(_every_server):
        server._forget_after_fork()


system.at_fork_in_child(_after_fork_in_child)


@atexit.register
def _stop_servers_at_exit() -> None:
    for server in list(_live_servers):
        server.stop(by="interpreter exit")
