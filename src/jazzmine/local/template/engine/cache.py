"""The small cache kept for compiled templates and for template capabilities.

Both are looked up on every rendering and cost milliseconds to build; a process sees
few distinct templates, so a full cache is simply emptied rather than aged. No
llama.cpp counterpart: llama-server builds its templates once at start.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# entries kept at most; past it, all are forgotten
CACHE_LIMIT = 32


class BoundedCache(Generic[K, V]):
    """A thread-safe mapping that forgets everything once it holds CACHE_LIMIT entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_LIMIT:
                self._entries.clear()
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
