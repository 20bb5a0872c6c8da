"""Warm mode's transport: each call is one streamed request to a kept llama-server.

The server itself (start, idle stop) is ``llama_server``, its sharing
``server_registry``; this module sends each request over the private Unix socket and
reads the reply as it streams, with what a failure means. The ``/completion`` API's
shapes (request body, events, closing event) are ``server_api``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from .binary import probe
from .config import LocalConfig
from .diagnose import failure_cause
from .errors import (
    DeadlineExceeded,
    LLMConnectionError,
    LLMError,
    LLMInternalError,
    LLMInvalidRequestError,
)
from .llama_server import OPTIONAL_SERVER_FLAGS, LlamaServer, ServerKey, find_server
from .percall import check_workers
from .reply import OutputShape
from .request import GenerationRequest, RunOutcome
from .server_api import EventReader, outcome_of, request_body, status_error
from .server_registry import acquire_server, release_server

# After the reply is complete on our side, how long the server may take to send its
# closing event (with exact counts) before the request is dropped.
CLOSING_EVENT_WAIT = 2.0


class ServerSession:
    """One streamed request to the warm server."""

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
        self._reader = EventReader()
        self._stack = contextlib.ExitStack()
        self._lines: Iterator[str] | None = None
        self._socket: socket.socket | None = None
        self._ended_by: str | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ServerSession:
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
            raise status_error(response.status_code, body)
        stream = response.extensions.get("network_stream")
        with self._lock:
            self._socket = stream.get_extra_info("socket") if stream is not None else None
            ended_early = self._ended_by is not None
        if ended_early:
            self._shut_socket()
        self._lines = response.iter_lines()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Closing the response closes the connection: llama-server stops that request alone.
        self._stack.close()

    def interrupt(self, reason: str) -> None:
        """From any thread: drop the connection, which ends this request alone."""
        with self._lock:
            self._ended_by = reason
        self._shut_socket()

    def _shut_socket(self) -> None:
        with self._lock:
            sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def chunks(self, deadline: float | None) -> Iterator[bytes]:
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
            if self._ended_by is not None:
                return  # we dropped the connection ourselves
            raise _transport_failure(self.server, error) from error

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        if reply_complete and self._reader.final is None:
            soon = time.monotonic() + CLOSING_EVENT_WAIT
            with contextlib.suppress(DeadlineExceeded, LLMError):
                for _ in self.chunks(soon if deadline is None else min(deadline, soon)):
                    pass
        if not reply_complete and self._reader.final is None:
            if self._ended_by is not None:
                raise LLMInternalError(
                    f"{self._ended_by} ended this call", stderr=self.server.stderr_text()
                )
            raise _died(self.server)
        return outcome_of(self._reader.final, reply_complete, "")

    def stderr_text(self) -> str:
        return self.server.stderr_text()


def _timeout(deadline: float | None) -> httpx.Timeout:
    """Socket timeouts bounded by the call's deadline (each read waits at most that long)."""
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

    @property
    def server(self) -> LlamaServer:
        """The server this transport's calls go to (started on the first call)."""
        return self._shared_server()

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

    def runs_llama_cpp(self) -> bool:
        return True

    def explain(self, error: LLMError) -> str | None:
        return failure_cause(self.config, error)

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
