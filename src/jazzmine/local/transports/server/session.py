"""One streamed request to the warm server: sent over the private Unix socket, its reply
read as it streams, and what a failure means (a dying server, a dropped connection).
``transport`` opens sessions; the ``/completion`` API's shapes are ``api``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from ...errors import DeadlineExceeded, LLMConnectionError, LLMError, LLMInternalError
from ...reply.assembler import OutputShape
from ...request import GenerationRequest, RunOutcome
from .api import EventReader, outcome_of, request_body, status_error
from .process import LlamaServer

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
        self._send()
        return self

    def _send(self) -> None:
        # The transport counted this request before starting the server (see open()).
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.server.end_request)
        try:
            response = self._stack.enter_context(
                self.server.client().stream(
                    "POST",
                    "/completion",
                    json=request_body(self.request),
                    timeout=timeout_of(self._deadline),
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


def timeout_of(deadline: float | None) -> httpx.Timeout:
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


def server_details(server: LlamaServer) -> dict[str, Any]:
    return {
        "endpoint": "llama-server",
        "binary": server.key.server_path,
        "binary_kind": "llama-server",
        "model_path": server.key.model_path,
        "server_pid": server.pid,
        "server_context": server.key.context_per_slot,
    }
