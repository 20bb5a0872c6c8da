"""Warm mode's transport: each call is one streamed request to a kept llama-server.

The server itself (start, idle stop) is ``process``, its sharing ``registry``; one
request in flight is a ``session``. This module picks the server each request goes to.

Per call, llama-completion's context is sized to the call; a server's slots have one
size. So when the caller leaves the context to LocalLLM, a call the slots are too small
for moves this LocalLLM to a server with larger slots (the next power of two that holds
the prompt and the reply, at most the model's trained context) and is sent once more;
the smaller server finishes the calls it has and stops, or stays for its other sharers.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import httpx

from ...errors import (
    DeadlineExceeded,
    LLMContextLengthError,
    LLMError,
    LLMInvalidRequestError,
    context_length_error,
)
from ...request import GenerationRequest
from ..binary import probe
from ..config import DEFAULT_REPLY_ROOM, LocalConfig, trained_context
from ..diagnose import failure_cause
from ..percall import check_workers
from .key import OPTIONAL_SERVER_FLAGS, ServerKey, find_server
from .process import LlamaServer
from .registry import acquire_server, release_server
from .session import ServerSession, server_details, timeout_of


def _count_tokens(server: LlamaServer, prompt: str, deadline: float | None) -> int | None:
    """The prompt's tokens as ``/completion`` counts them (special tokens added and
    parsed), or None when the server cannot say (the call itself will then fail)."""
    try:
        answer = server.client().post(
            "/tokenize",
            json={"content": prompt, "add_special": True, "parse_special": True},
            timeout=timeout_of(deadline),
        )
        return len(answer.json()["tokens"])
    except httpx.TimeoutException:
        raise DeadlineExceeded from None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def model_key(path: str) -> str:
    """The model as the server is given it: its directory resolved, its own name kept. A
    split GGUF's first part must keep its name (llama.cpp finds the other parts by it), and
    a pulled model is a link in the Hub cache to a blob named by its hash."""
    return os.path.join(
        os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    )


def grown_context(prompt_tokens: int, max_tokens: int | None, trained: int) -> int:
    """Slots for a call of ``prompt_tokens``: the next power of two that holds the prompt
    and its reply (``max_tokens``, else the room a per-call run leaves), at most
    ``trained``. Powers of two keep the sizes few, so calls of similar length share."""
    needed = prompt_tokens + 1 + (max_tokens if max_tokens is not None else DEFAULT_REPLY_ROOM)
    return min(trained, 1 << (needed - 1).bit_length())


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
        # A context the caller chose is kept; one left to us grows with the calls.
        self._grows = config.n_ctx is None
        # How many times this transport moved to larger slots.
        self.grown = 0

    @property
    def server(self) -> LlamaServer:
        """The server this transport's calls go to (started on the first call)."""
        with self._lock:
            return self._current()

    def _current(self) -> LlamaServer:
        """The server, taken from the registry on first use; the caller holds the lock."""
        if self._server is None:
            model_path = self.config.resolved_model(llama_binary=True)
            if model_path is None:
                raise LLMInvalidRequestError("warm mode needs a GGUF model path")
            accepted = probe(self.server_path)
            key = ServerKey(
                server_path=os.path.realpath(self.server_path),
                model_path=model_key(model_path),
                context_per_slot=self.config.server_context(model_path),
                slots=self._slots,
                threads=self.config.threads,
                offload_args=tuple(self.config.offload_args()),
                extra_args=self.config.extra_args,
                optional_flags=tuple(f for f in OPTIONAL_SERVER_FLAGS if accepted.accepts(f)),
                env=tuple(sorted(self.config.env.items())) if self.config.env is not None else None,
            )
            assert self.config.keep_alive is not None
            self._server = acquire_server(key, self.config.keep_alive, larger_ok=self._grows)
        return self._server

    def _ensure_started(self, server: LlamaServer, deadline: float | None) -> None:
        if not server.running():
            check_workers(self.config.rpc_servers)
        server.ensure_started(deadline)

    def _begin(self, deadline: float | None, at_least: int = 0) -> LlamaServer:
        """The running server, with this request counted before it is started, so an idle
        timer cannot stop it in between; the session ends the count. Counted under the
        lock, so a server this transport moves away from gets no call after the move."""
        with self._lock:
            server = self._current()
            if server.key.context_per_slot < at_least:
                server = self._move(at_least)
            server.begin_request()
        try:
            self._ensure_started(server, deadline)
        except BaseException:
            server.end_request()
            raise
        return server

    def _move(self, context_per_slot: int) -> LlamaServer:
        """Take a server with larger slots and let go of the current one, which stops after
        its calls in flight (or stays for its other sharers). The caller holds the lock."""
        old = self._current()
        assert self.config.keep_alive is not None
        key = dataclasses.replace(old.key, context_per_slot=context_per_slot)
        self._server = acquire_server(key, self.config.keep_alive, larger_ok=True)
        release_server(old, calls_finish=True)
        self.grown += 1
        return self._server

    def grow(self, request: GenerationRequest, refusal: LLMContextLengthError) -> bool:
        """A call refused as too long for the slots: move to a server whose slots hold it
        (the call's flow then sends it again). False when the context was the caller's
        choice or cannot grow; past the model's trained context, the per-call error."""
        if not self._grows:
            return False
        with self._lock:
            model_path = self._current().key.model_path
        prompt_tokens = refusal.prompt_tokens
        trained = trained_context(model_path)
        if prompt_tokens is None or trained is None:
            return False
        if prompt_tokens >= trained:
            # As large as the model goes: the same error a per-call run gives.
            raise context_length_error(prompt_tokens, trained) from None
        size = grown_context(prompt_tokens, request.max_tokens, trained)
        with self._lock:
            if self._current().key.context_per_slot < size:  # else another call moved it
                self._move(size)
        return True

    def open(self, request: GenerationRequest, deadline: float | None) -> ServerSession:
        server = self._begin(deadline)
        if self._grows and request.max_tokens is not None:
            server = self._room_for_reply(server, request, request.max_tokens, deadline)
        return ServerSession(server, request, server_details(server), deadline)

    def _room_for_reply(
        self,
        server: LlamaServer,
        request: GenerationRequest,
        max_tokens: int,
        deadline: float | None,
    ) -> LlamaServer:
        """The server, or one with larger slots when the prompt fits its slots but the
        prompt and ``max_tokens`` do not: a per-call run sizes its context for both, so
        a reply cut short by the slot's end would be warm mode's alone. A token is never
        shorter than a byte, so only a prompt whose bytes could fill the slot is counted."""
        slot = server.key.context_per_slot
        if len(request.prompt.encode("utf-8")) + 1 + max_tokens <= slot:
            return server
        trained = trained_context(server.key.model_path)
        if trained is None or trained <= slot:
            return server
        try:
            prompt_tokens = _count_tokens(server, request.prompt, deadline)
        except BaseException:
            server.end_request()
            raise
        if prompt_tokens is None or prompt_tokens + 1 + max_tokens <= slot:
            return server
        if prompt_tokens >= trained:
            return server  # too long for any slot: the call itself reports it
        server.end_request()
        return self._begin(deadline, at_least=grown_context(prompt_tokens, max_tokens, trained))

    def runs_llama_cpp(self) -> bool:
        return True

    def explain(self, error: LLMError) -> str | None:
        return failure_cause(self.config, error)

    def health(self) -> bool:
        try:
            server = self.server
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
