"""Warm mode: a private llama-server kept loaded, shared, reused and always reaped.

One ``LlamaServer`` owns one ``llama-server`` child. It listens only on a Unix socket in
a private directory (0700, removed when it stops) with ``--no-slots`` and ``--offline``,
so no TCP port is opened and no other local user can read prompts or replies. Instances
of LocalLLM with the same server binary, model and load options share one server through
a registry; it stops after the last sharer closes, after ``keep_alive`` of idleness, at
interpreter exit, and, through a parent-death signal, when this process is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .binary import probe
from .config import LocalConfig, llama_environment
from .errors import (
    LLMConnectionError,
    LLMError,
    LLMInternalError,
    LLMInvalidRequestError,
)
from .percall import check_workers
from .process import DeadlineExceeded, StderrBuffer, terminate_group
from .reply import OutputShape
from .request import GenerationRequest, RunOutcome
from .transport import off_loop

if TYPE_CHECKING:
    import ssl

    import httpx

SERVER_NAME = "llama-server"
# --swa-full keeps the whole cache of sliding-window layers (Gemma 3 and others), so a
# prompt that repeats an earlier one reuses all of it, not just the last checkpoint; it
# also makes a repeated call give exactly the text a fresh one gives.
OPTIONAL_SERVER_FLAGS = ("--swa-full", "--no-webui", "--no-warmup")
START_TIMEOUT_SECONDS = 120.0
GRACE_SECONDS = 2.0
# After the reply is complete on our side, how long the server may take to send its
# closing event (with exact counts) before the request is dropped.
CLOSING_EVENT_WAIT = 2.0

# Runs between fork and exec of the server: ask Linux to SIGKILL the server when the
# thread that started it ends. That thread is the spawner below, which lives as long as
# the process, so the server dies with the process even on SIGKILL or the OOM killer.
_LAUNCHER = """
import ctypes, os, sys
PR_SET_PDEATHSIG = 1
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 9)
if os.getppid() != int(sys.argv[1]):
    os._exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


def find_server(config: LocalConfig) -> str:
    """``server_path``, else ``llama-server`` beside the binary; never a silent fallback."""
    if config.server_path is not None:
        candidates = [config.server_path]
    else:
        directory = os.path.dirname(os.path.realpath(config.binary_path))
        candidates = [os.path.join(directory, SERVER_NAME)]
        if os.path.dirname(config.binary_path) != directory:
            candidates.append(os.path.join(os.path.dirname(config.binary_path), SERVER_NAME))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "warm mode (keep_alive) needs llama-server, and none was found; looked at: "
        + ", ".join(candidates)
        + " (pass server_path=, or set keep_alive=None for per-call processes)"
    )


@dataclass(frozen=True)
class ServerKey:
    """What makes two LocalLLMs able to share one server."""

    server_path: str
    model_path: str
    context_per_slot: int
    slots: int
    threads: int | None
    offload_args: tuple[str, ...]
    extra_args: tuple[str, ...]
    # Optional flags this llama-server accepts (from its --help).
    optional_flags: tuple[str, ...] = ()
    # The child's environment when the caller restricted it (None: inherited).
    env: tuple[tuple[str, str], ...] | None = None

    def argv(self, socket_path: str) -> list[str]:
        # llama-server divides -c among its slots: each call keeps the context it asked for.
        size = ["-c", str(self.context_per_slot * self.slots), "-np", str(self.slots)]
        # Private by construction: no /slots (it shows every prompt and reply), no network.
        private = ["--no-slots", "--offline"]
        argv = [self.server_path, "-m", self.model_path, "--host", socket_path, *size, *private]
        argv += self.optional_flags
        if self.threads is not None:
            argv += ["-t", str(self.threads)]
        return argv + list(self.offload_args) + list(self.extra_args)


class _Spawner:
    """A thread that lives as long as the process and starts every server."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], queue.Queue[Any]]]
        self._requests = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def spawn(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="jazzmine-spawner", daemon=True
                )
                self._thread.start()
        answer: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._requests.put((start, answer))
        result = answer.get()
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    def _serve(self) -> None:
        while True:
            start, answer = self._requests.get()
            try:
                answer.put(start())
            except BaseException as error:  # handed to the caller, who raises it
                answer.put(error)


_spawner = _Spawner()


class LlamaServer:
    """One llama-server child and its private socket directory; the only owner of both."""

    def __init__(self, key: ServerKey) -> None:
        self.key = key
        self._env = dict(key.env) if key.env is not None else None
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: str | None = None
        self._stderr = StderrBuffer()
        # Its own lock: the drain thread must never wait for the lifecycle lock, which
        # is held while stopping joins that very thread.
        self._stderr_lock = threading.Lock()
        self._stderr_thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self.sharers = 0
        self.keep_alive: float = -1.0
        self.active = 0
        self._idle_timer: threading.Timer | None = None
        self.starts = 0
        # Who stopped the server on purpose, so a call it cut short can say so.
        self.stopped_by: str | None = None

    # ---------- lifecycle ----------
    @property
    def socket_path(self) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, "llama.sock")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def directory(self) -> str | None:
        return self._directory

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exited_within(self, seconds: float) -> bool:
        process = self._process
        if process is None:
            return True
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def ensure_started(self, deadline: float | None) -> None:
        with self._lock:
            if self.running():
                return
            if self._process is not None:
                self._reap()  # it died: start a fresh one
            self._start(deadline)

    def _start(self, deadline: float | None) -> None:
        self._directory = tempfile.mkdtemp(prefix="jazzmine-server-")  # mode 0700
        self._stderr = StderrBuffer()
        argv = [
            sys.executable,
            "-S",
            "-c",
            _LAUNCHER,
            str(os.getpid()),
            *self.key.argv(self.socket_path),
        ]

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                env=llama_environment(self._env),  # read at each start, as inheriting would
            )

        try:
            self._process = _spawner.spawn(start)
        except BaseException:
            self._remove_directory()
            raise
        _live_servers.add(self)
        self.starts += 1
        self.stopped_by = None
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(self._process,), daemon=True
        )
        self._stderr_thread.start()
        self._wait_ready(deadline)

    def _drain_stderr(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        while chunk := os.read(process.stderr.fileno(), 65536):
            with self._stderr_lock:
                self._stderr.add(chunk)

    def stderr_text(self) -> str:
        with self._stderr_lock:
            return self._stderr.text()

    def _wait_ready(self, deadline: float | None) -> None:
        limit = time.monotonic() + START_TIMEOUT_SECONDS
        if deadline is not None:
            limit = min(limit, deadline)
        client = self.client()
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                self._stderr_thread_join()
                stderr = self.stderr_text()
                code = process.returncode
                self._reap()
                raise LLMInternalError(
                    f"llama-server exited with code {code} before the model was loaded"
                    + (f"; stderr:\n{stderr.strip()}" if stderr.strip() else ""),
                    stderr=stderr,
                    exit_code=code,
                )
            with contextlib.suppress(Exception):
                if client.get("/health", timeout=2.0).status_code == 200:
                    return
            if time.monotonic() >= limit:
                stderr = self.stderr_text()
                self._reap()
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded
                raise LLMInternalError(
                    f"llama-server did not load the model within {START_TIMEOUT_SECONDS:.0f} s",
                    stderr=stderr,
                )
            time.sleep(0.02)

    def _stderr_thread_join(self) -> None:
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2.0)

    def stop(self, by: str | None = None) -> None:
        """Terminate, grace, kill, reap; remove the socket directory. Idempotent."""
        with self._lock:
            self._cancel_idle_timer()
            if self._process is not None and by is not None:
                self.stopped_by = by
            self._reap()

    def _reap(self) -> None:
        process = self._process
        if process is not None:
            terminate_group(process, GRACE_SECONDS)
            self._stderr_thread_join()
            if process.stderr is not None:
                process.stderr.close()
            self._process = None
        _live_servers.discard(self)
        self._close_clients()
        self._remove_directory()

    def _remove_directory(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    # ---------- idleness ----------
    def begin_request(self) -> None:
        with self._lock:
            self.active += 1
            self._cancel_idle_timer()

    def end_request(self) -> None:
        with self._lock:
            self.active -= 1
            if self.active == 0 and self.keep_alive >= 0 and self.running():
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
        import httpx

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

    def async_client(self) -> httpx.AsyncClient:
        """A client for one request: an event loop owns its sockets, so none is shared."""
        import httpx

        transport = httpx.AsyncHTTPTransport(uds=self.socket_path, verify=_no_tls())
        return httpx.AsyncClient(
            transport=transport, base_url="http://llama-server", timeout=None, trust_env=False
        )

    def _close_clients(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@functools.cache
def _no_tls() -> ssl.SSLContext:
    """An unused TLS context, made once: httpx builds one per transport even for
    ``verify=False`` (about 0.2 ms), and async calls make a transport each."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_live_servers: set[LlamaServer] = set()
_registry: dict[ServerKey, LlamaServer] = {}
_registry_lock = threading.Lock()


@atexit.register
def _stop_servers_at_exit() -> None:
    for server in list(_live_servers):
        server.stop(by="interpreter exit")


def acquire_server(key: ServerKey, keep_alive: float) -> LlamaServer:
    """The shared server for ``key``, counting one more sharer."""
    with _registry_lock:
        server = _registry.get(key)
        if server is None:
            server = _registry[key] = LlamaServer(key)
        server.sharers += 1
        # The server stays as long as its most patient sharer wants (negative: forever).
        if server.sharers == 1:
            server.keep_alive = keep_alive
        elif keep_alive < 0 or server.keep_alive < 0:
            server.keep_alive = -1.0
        else:
            server.keep_alive = max(keep_alive, server.keep_alive)
        return server


def release_server(server: LlamaServer) -> None:
    with _registry_lock:
        server.sharers -= 1
        if server.sharers > 0:
            return
        if _registry.get(server.key) is server:
            del _registry[server.key]
    server.stop(by="LocalLLM.close()")


# ---------- one request ----------


def request_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "n_predict": request.max_tokens if request.max_tokens is not None else -1,
        "stop": list(request.stop_sequences),
        "stream": True,
        "cache_prompt": True,
    }
    if request.temperature is not None:
        body["temperature"] = float(request.temperature)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.json_schema is not None:
        body["json_schema"] = request.json_schema
    if request.grammar is not None:
        body["grammar"] = request.grammar
    return body


def _outcome_of(final: dict[str, Any] | None, interrupted: bool, stderr: str) -> RunOutcome:
    outcome = RunOutcome(stderr=stderr, exit_code=0, interrupted=interrupted)
    if final is None:
        return outcome
    timings = final.get("timings") or {}
    outcome.prompt_tokens = final.get("tokens_evaluated")
    outcome.completion_tokens = final.get("tokens_predicted")
    stop_type = final.get("stop_type")
    if stop_type in ("eos", "word"):
        outcome.hit_token_limit = False
    elif stop_type == "limit":
        outcome.hit_token_limit = True
    outcome.details = {
        "prompt_tokens_reused": timings.get("cache_n", 0),
        "prompt_tokens_evaluated": timings.get("prompt_n"),
        "stop_type": stop_type,
        "id_slot": final.get("id_slot"),
    }
    return outcome


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("data: "):
        return None
    payload = line[6:].strip()
    if payload == "[DONE]":
        return None
    event: dict[str, Any] = json.loads(payload)
    return event


def _status_error(status: int, body: str) -> LLMError:
    try:
        message = json.loads(body).get("error", {}).get("message", body)
    except (ValueError, AttributeError):
        message = body
    if 400 <= status < 500:
        return LLMInvalidRequestError(f"llama-server refused the request ({status}): {message}")
    return LLMInternalError(f"llama-server failed the request ({status}): {message}")


class _EventReader:
    """Turns the server's event stream into reply bytes plus the closing event."""

    def __init__(self) -> None:
        self.final: dict[str, Any] | None = None

    def take(self, line: str) -> bytes | None:
        event = _parse_event(line)
        if event is None:
            return None
        if event.get("stop"):
            self.final = event
        content = event.get("content") or ""
        return content.encode("utf-8") if content else None


class _ServerSessionBase:
    """What the sync and async requests share: the request, its reader, the server."""

    def __init__(
        self,
        server: LlamaServer,
        request: GenerationRequest,
        details: dict[str, Any],
        deadline: float | None,
    ) -> None:
        self._deadline = deadline
        self.server = server
        self.request = request
        self.shape = OutputShape()
        self.details = details
        self._reader = _EventReader()

    def stderr_text(self) -> str:
        return self.server.stderr_text()


class ServerSession(_ServerSessionBase):
    """One streamed request to the warm server (sync)."""

    _lines: Iterator[str] | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ServerSession:
        import httpx

        # The transport counted this request before starting the server (see open()).
        self._stack.callback(self.server.end_request)
        try:
            response = self._stack.enter_context(
                self.server.client().stream(
                    "POST",
                    "/completion",
                    json=request_body(self.request),
                    timeout=_timeout(self._deadline),
                )
            )
        except httpx.TimeoutException:
            self._stack.close()
            raise DeadlineExceeded from None
        except httpx.TransportError as error:
            self._stack.close()
            raise _transport_failure(self.server, error) from error
        if response.status_code != 200:
            body = response.read().decode("utf-8", errors="replace")
            self._stack.close()
            raise _status_error(response.status_code, body)
        self._lines = response.iter_lines()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Closing the response closes the connection: llama-server stops that request alone.
        self._stack.close()

    def chunks(self, deadline: float | None) -> Iterator[bytes]:
        import httpx

        assert self._lines is not None
        try:
            for line in self._lines:
                data = self._reader.take(line)
                if data:
                    yield data
                if self._reader.final is not None:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded
        except httpx.TimeoutException:
            raise DeadlineExceeded from None
        except httpx.TransportError as error:
            raise _transport_failure(self.server, error) from error

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        if reply_complete and self._reader.final is None:
            soon = time.monotonic() + CLOSING_EVENT_WAIT
            with contextlib.suppress(DeadlineExceeded, LLMError):
                for _ in self.chunks(soon if deadline is None else min(deadline, soon)):
                    pass
        if not reply_complete and self._reader.final is None:
            raise _died(self.server)
        return _outcome_of(self._reader.final, reply_complete, "")


class AsyncServerSession(_ServerSessionBase):
    """One streamed request to the warm server (asyncio)."""

    _lines: AsyncIterator[str] | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> AsyncServerSession:
        import asyncio

        import httpx

        self._stack.callback(self.server.end_request)
        try:
            client = await self._stack.enter_async_context(self.server.async_client())
            response = await self._stack.enter_async_context(
                client.stream(
                    "POST",
                    "/completion",
                    json=request_body(self.request),
                    timeout=_timeout(self._deadline),
                )
            )
        except httpx.TimeoutException:
            await self._stack.aclose()
            raise DeadlineExceeded from None
        except httpx.TransportError as error:
            await self._stack.aclose()
            raise await asyncio.to_thread(_transport_failure, self.server, error) from error
        if response.status_code != 200:
            body = (await response.aread()).decode("utf-8", errors="replace")
            await self._stack.aclose()
            raise _status_error(response.status_code, body)
        self._lines = response.aiter_lines()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def chunks(self, deadline: float | None) -> AsyncIterator[bytes]:
        import asyncio

        import httpx

        assert self._lines is not None
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise DeadlineExceeded
                try:
                    line = await asyncio.wait_for(self._lines.__anext__(), left)
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise DeadlineExceeded from None
                data = self._reader.take(line)
                if data:
                    yield data
                if self._reader.final is not None:
                    return
        except httpx.TimeoutException:
            raise DeadlineExceeded from None
        except httpx.TransportError as error:
            raise await asyncio.to_thread(_transport_failure, self.server, error) from error

    async def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        import asyncio

        if reply_complete and self._reader.final is None:
            soon = time.monotonic() + CLOSING_EVENT_WAIT
            with contextlib.suppress(DeadlineExceeded, LLMError):
                async for _ in self.chunks(soon if deadline is None else min(deadline, soon)):
                    pass
        if not reply_complete and self._reader.final is None:
            raise await asyncio.to_thread(_died, self.server)
        return _outcome_of(self._reader.final, reply_complete, "")


def _timeout(deadline: float | None) -> httpx.Timeout:
    """Socket timeouts bounded by the call's deadline (each read waits at most that long)."""
    import httpx

    if deadline is None:
        return httpx.Timeout(None)
    return httpx.Timeout(max(0.001, deadline - time.monotonic()))


def _died(server: LlamaServer) -> LLMInternalError:
    process_gone = server.exited_within(0.5)
    stderr = server.stderr_text()
    if server.stopped_by is not None:
        what = f"{server.stopped_by} ended this call; its llama-server was stopped"
    elif process_gone:
        what = "llama-server died during the call"
    else:
        what = "llama-server ended the reply early"
    return LLMInternalError(what, stderr=stderr)


def _transport_failure(server: LlamaServer, error: Exception) -> LLMError:
    # A dropped connection is how a dying server looks from here: give its exit a moment.
    if server.stopped_by is not None or server.exited_within(0.5):
        return _died(server)
    return LLMConnectionError(f"could not talk to llama-server at {server.directory}: {error}")


class ServerTransport:
    """Warm mode: requests go to a shared llama-server that keeps the model loaded."""

    name = "server"

    def __init__(self, config: LocalConfig, slots: int) -> None:
        assert config.keep_alive is not None
        self.config = config
        self.server_path = find_server(config)
        self._slots = slots
        self._server: LlamaServer | None = None
        self._lock = threading.Lock()

    def _shared_server(self) -> LlamaServer:
        with self._lock:
            if self._server is None:
                model_path = self.config.resolved_model(llama_binary=True)
                if model_path is None:
                    raise LLMInvalidRequestError("warm mode needs a GGUF model path")
                accepted = probe(self.server_path)
                key = ServerKey(
                    server_path=os.path.realpath(self.server_path),
                    model_path=os.path.realpath(model_path),
                    context_per_slot=self.config.server_context(model_path),
                    slots=self._slots,
                    threads=self.config.threads,
                    offload_args=tuple(self.config.offload_args()),
                    extra_args=self.config.extra_args,
                    optional_flags=tuple(f for f in OPTIONAL_SERVER_FLAGS if accepted.accepts(f)),
                    env=tuple(sorted(self.config.env.items()))
                    if self.config.env is not None
                    else None,
                )
                assert self.config.keep_alive is not None
                self._server = acquire_server(key, self.config.keep_alive)
            return self._server

    def _details(self, server: LlamaServer) -> dict[str, Any]:
        return {
            "endpoint": "llama-server",
            "binary": server.key.server_path,
            "binary_kind": "llama-server",
            "model_path": server.key.model_path,
            "server_pid": server.pid,
        }

    def _ensure_started(self, server: LlamaServer, deadline: float | None) -> None:
        if not server.running():
            check_workers(self.config.rpc_servers)
        server.ensure_started(deadline)

    def _begin(self, deadline: float | None) -> LlamaServer:
        """The running server, with this request counted before it is started, so an idle
        timer cannot stop it in between; the session ends the count."""
        server = self._shared_server()
        server.begin_request()
        try:
            self._ensure_started(server, deadline)
        except BaseException:
            server.end_request()
            raise
        return server

    def open(self, request: GenerationRequest, deadline: float | None) -> ServerSession:
        server = self._begin(deadline)
        return ServerSession(server, request, self._details(server), deadline)

    async def aopen(self, request: GenerationRequest, deadline: float | None) -> AsyncServerSession:
        # Starting may wait for a model load (and the server's lock): off the event loop;
        # cancelled meanwhile, end the request it counted.
        server = await off_loop(lambda: self._begin(deadline), LlamaServer.end_request)
        return AsyncServerSession(server, request, self._details(server), deadline)

    def health(self) -> bool:
        try:
            server = self._shared_server()
            self._ensure_started(server, None)
            return server.client().get("/health", timeout=5.0).status_code == 200
        except (LLMError, OSError, DeadlineExceeded):
            return False
        except Exception:  # an HTTP failure is an unhealthy answer, not a crash
            return False

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            release_server(server)
