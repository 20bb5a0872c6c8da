"""Which kept llama-server each LocalLLM uses: one per ``ServerKey``, shared.

Instances of LocalLLM with the same server binary, model and load options share one
``LlamaServer``. Each counts as a sharer from its first warm call to its ``close()``;
the server stays loaded as long as its most patient sharer's ``keep_alive`` asks, and
is stopped when the last sharer closes. A forked child starts with no shared servers.

A sharer whose call needed more context than its server's slots moves to a server with
larger slots (``ServerTransport`` grows it): it takes that server from here and lets go
of the smaller one, which the others keep using, or which stops once its last calls end.
A newcomer that leaves the context to LocalLLM joins a grown server too, rather than
loading the model a second time for smaller slots.
"""

from __future__ import annotations

import dataclasses
import threading

from ... import system
from .key import ServerKey
from .process import LlamaServer

_registry: dict[ServerKey, LlamaServer] = {}
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """The parent's servers stay the parent's (``process`` makes each forget its
    child): a forked child shares none of them, and its lock starts free."""
    global _registry_lock
    _registry.clear()
    _registry_lock = threading.Lock()


system.at_fork_in_child(_after_fork_in_child)


def acquire_server(key: ServerKey, keep_alive: float, larger_ok: bool = False) -> LlamaServer:
    """The shared server for ``key``, counting one more sharer. With ``larger_ok`` (the
    context per slot was not chosen by the caller), a server that differs only by larger
    slots will do when none has these: the smallest such."""
    with _registry_lock:
        server = _registry.get(key)
        if server is None and larger_ok:
            server = _smallest_larger(key)
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


def _smallest_larger(key: ServerKey) -> LlamaServer | None:
    larger = [
        server
        for other, server in _registry.items()
        if other.context_per_slot > key.context_per_slot
        and dataclasses.replace(other, context_per_slot=key.context_per_slot) == key
    ]
    return min(larger, key=lambda server: server.key.context_per_slot, default=None)


def release_server(server: LlamaServer, *, calls_finish: bool = False) -> None:
    """One sharer fewer; the last one stops the server: at once (``close()`` ends the
    calls still running), or with ``calls_finish`` once its calls in flight are done."""
    with _registry_lock:
        server.sharers -= 1
        if server.sharers > 0:
            return
        if _registry.get(server.key) is server:
            del _registry[server.key]
    if calls_finish:
        server.retire()
    else:
        server.stop(by="LocalLLM.close()")
