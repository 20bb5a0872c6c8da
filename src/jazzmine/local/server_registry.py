"""Which kept llama-server each LocalLLM uses: one per ``ServerKey``, shared.

Instances of LocalLLM with the same server binary, model and load options share one
``LlamaServer``. Each counts as a sharer from its first warm call to its ``close()``;
the server stays loaded as long as its most patient sharer's ``keep_alive`` asks, and
is stopped when the last sharer closes. A forked child starts with no shared servers.
"""

from __future__ import annotations

import os
import threading

from .llama_server import LlamaServer, ServerKey

_registry: dict[ServerKey, LlamaServer] = {}
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """The parent's servers stay the parent's (``llama_server`` makes each forget its
    child): a forked child shares none of them, and its lock starts free."""
    global _registry_lock
    _registry.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
