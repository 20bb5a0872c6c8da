"""The model budget: how many warm servers one Python process keeps loaded, and how much
memory they may take together.

Every ``LlamaServer`` of this process asks here before it starts (``admit``) and says
when its calls begin and end and when it stops. Past the budget, the least recently
used idle server is stopped first (an eviction, recorded). A server with calls in flight
is never stopped: the newcomer waits for one to become idle, within its call's deadline.
A server whose sharers asked for ``keep_alive=-1`` is pinned: it counts, and is never
evicted.

The budget is a number of models (``JAZZMINE_MAX_LOADED_MODELS``, as Ollama's
``OLLAMA_MAX_LOADED_MODELS``; default 3) and a size in MiB (``JAZZMINE_MAX_LOADED_MIB``;
default three quarters of the machine's memory), or ``set_model_budget()``. A server's
size is an estimate made before it starts: the GGUF file (its weights, mapped) plus
its KV cache at f16 (layers x context x KV heads x head size, from the header) plus a
fixed allowance for compute buffers; once it runs, its resident size when larger.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ... import system
from ...errors import LLMInvalidRequestError, LLMTimeoutError, OptionValueError
from ...gguf import reader as gguf

DEFAULT_MAX_MODELS = 3
# Of the machine's memory (MemTotal), when no size is set: the rest is the system's.
DEFAULT_MEMORY_SHARE = 0.75
# Compute buffers and the server's own heap, beyond weights and KV cache.
OVERHEAD_MIB = 64
# Evictions remembered for api_metrics and doctor.
EVICTIONS_KEPT = 32
_MIB = 1024 * 1024


class Loadable(Protocol):
    """What the budget needs of a server (``process.LlamaServer``)."""

    active: int
    keep_alive: float

    @property
    def model_path(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def evict_if_idle(self, by: str) -> bool: ...


@dataclass
class _Entry:
    mib: int
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class _State:
    max_models: int | None = None  # None: from the environment, else the default
    max_mib: int | None = None
    loaded: dict[Loadable, _Entry] = field(default_factory=dict)
    evicted: list[dict[str, Any]] = field(default_factory=list)
    evictions: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)


_state = _State()


def _after_fork_in_child() -> None:
    """A forked child loads none of its parent's servers: it starts with an empty budget."""
    global _state
    _state = _State(max_models=_state.max_models, max_mib=_state.max_mib)


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------- the limits ----------
def set_model_budget(max_models: int | None = None, max_mib: int | None = None) -> None:
    """Set how many warm models this process keeps loaded at once, and how many MiB they
    may take together (None: ``JAZZMINE_MAX_LOADED_MODELS`` / ``JAZZMINE_MAX_LOADED_MIB``,
    else 3 models and three quarters of the machine's memory). Servers already past a
    lowered budget are stopped as they become idle, when the next server starts."""
    for name, value in (("max_models", max_models), ("max_mib", max_mib)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise OptionValueError(f"{name} must be an int or None, got {value!r}")
        if value is not None and value < 1:
            raise OptionValueError(f"{name} must be at least 1, got {value}")
    with _state.condition:
        _state.max_models, _state.max_mib = max_models, max_mib
        _state.condition.notify_all()


def limits() -> tuple[int, int]:
    """The budget in force: (models, MiB)."""
    models = _state.max_models or _from_environment("JAZZMINE_MAX_LOADED_MODELS")
    mib = _state.max_mib or _from_environment("JAZZMINE_MAX_LOADED_MIB")
    return (models or DEFAULT_MAX_MODELS, mib or default_mib())


def _from_environment(variable: str) -> int | None:
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise OptionValueError(f"{variable} must be a whole number, got {text!r}") from None
    if value < 1:
        raise OptionValueError(f"{variable} must be at least 1, got {value}")
    return value


def default_mib() -> int:
    """Three quarters of the machine's memory (MemTotal), or 4096 MiB when unknown."""
    total = system.total_memory_mib()
    return int(total * DEFAULT_MEMORY_SHARE) if total else 4096


# ---------- a server's size ----------
def estimate_mib(model_path: str, context_total: int) -> int:
    """Weights (the file) + KV cache at f16 + the overhead, in MiB."""
    try:
        weights = os.path.getsize(model_path)
    except OSError:
        weights = 0
    return (weights + _kv_bytes(model_path, context_total)) // _MIB + OVERHEAD_MIB


def _kv_bytes(model_path: str, context_total: int) -> int:
    try:
        arch = gguf.read_metadata(model_path, ["general.architecture"]).get("general.architecture")
        if not isinstance(arch, str):
            return 0
        names = ["block_count", "embedding_length", "attention.head_count"]
        names += ["attention.head_count_kv", "attention.key_length", "attention.value_length"]
        meta = gguf.read_metadata(model_path, [f"{arch}.{name}" for name in names])
    except (OSError, gguf.GGUFError):
        return 0
    values = {name: meta.get(f"{arch}.{name}") for name in names}
    layers, width, heads = (values[n] for n in names[:3])
    if not all(isinstance(v, int) and v > 0 for v in (layers, width, heads)):
        return 0
    assert isinstance(layers, int) and isinstance(width, int) and isinstance(heads, int)
    kv_heads = values["attention.head_count_kv"]
    kv_heads = kv_heads if isinstance(kv_heads, int) and kv_heads > 0 else heads
    key = values["attention.key_length"]
    value = values["attention.value_length"]
    key = key if isinstance(key, int) and key > 0 else width // heads
    value = value if isinstance(value, int) and value > 0 else width // heads
    return layers * context_total * kv_heads * (key + value) * 2


def resident_mib(pid: int | None) -> int:
    """A running server's resident size (VmRSS), 0 when unknown."""
    return (system.resident_mib(pid) or 0) if pid is not None else 0


# ---------- admission and eviction ----------
def admit(server: Loadable, mib: int, deadline: float | None) -> None:
    """Make room for ``server`` (about ``mib``) and count it as loaded: evict the least
    recently used idle, unpinned servers; wait for busy ones within ``deadline``."""
    condition = _state.condition
    with condition:
        while True:
            max_models, max_mib = limits()
            if mib > max_mib:
                raise LLMInvalidRequestError(
                    f"{server.model_path} needs about {mib} MiB loaded, more than the whole "
                    f"model budget of {max_mib} MiB (raise JAZZMINE_MAX_LOADED_MIB or "
                    "set_model_budget(max_mib=...))"
                )
            others = {s: e for s, e in _state.loaded.items() if s is not server}
            used = sum(_size(s, e) for s, e in others.items())
            if len(others) < max_models and used + mib <= max_mib:
                _state.loaded[server] = _Entry(mib)
                return
            if _evict_one(others):
                continue
            if all(s.keep_alive < 0 for s in others):
                raise LLMInvalidRequestError(
                    f"the model budget ({max_models} models, {max_mib} MiB) is taken by "
                    f"pinned servers (keep_alive=-1): {_names(others)}; close one of their "
                    "LocalLLMs or raise JAZZMINE_MAX_LOADED_MODELS / set_model_budget()"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise LLMTimeoutError(
                    f"timed out waiting for room in the model budget ({max_models} models, "
                    f"{max_mib} MiB) to load {server.model_path}: every loaded server is busy "
                    f"or pinned: {_names(others)}"
                )
            # Woken when a server's calls end or one stops; a short wait re-checks servers
            # whose lock was busy when they were tried.
            condition.wait(0.25 if remaining is None else min(remaining, 0.25))


def _evict_one(others: dict[Loadable, _Entry]) -> bool:
    idle = [
        (e.last_used, id(s), s) for s, e in others.items() if s.active == 0 and s.keep_alive >= 0
    ]
    for _, _, victim in sorted(idle, key=lambda item: (item[0], item[1])):
        if victim.evict_if_idle("the model budget"):
            _state.loaded.pop(victim, None)
            _state.evictions += 1
            _state.evicted.append({"model": victim.model_path, "at": time.time()})
            del _state.evicted[:-EVICTIONS_KEPT]
            return True
    return False


def _size(server: Loadable, entry: _Entry) -> int:
    return max(entry.mib, resident_mib(server.pid))


def _names(servers: dict[Loadable, _Entry]) -> str:
    return ", ".join(os.path.basename(s.model_path) for s in servers) or "none"


def touch(server: Loadable) -> None:
    """A call began or ended on ``server``: it is the most recently used; waiters re-check."""
    with _state.condition:
        entry = _state.loaded.get(server)
        if entry is not None:
            entry.last_used = time.monotonic()
        _state.condition.notify_all()


def unloaded(server: Loadable) -> None:
    """``server`` stopped (idle timer, close, exit, death): it no longer counts."""
    with _state.condition:
        _state.loaded.pop(server, None)
        _state.condition.notify_all()


def snapshot() -> dict[str, Any]:
    """What is loaded and what was evicted, for api_metrics and ``jazzmine doctor``."""
    max_models, max_mib = limits()
    with _state.condition:
        loaded = sorted(_state.loaded.items(), key=lambda item: -item[1].last_used)
        return {
            "max_models": max_models,
            "max_mib": max_mib,
            "loaded": [
                {
                    "model": server.model_path,
                    "pid": server.pid,
                    "mib": _size(server, entry),
                    "busy": server.active > 0,
                    "pinned": server.keep_alive < 0,
                }
                for server, entry in loaded
            ],
            "evictions": _state.evictions,
            "evicted": [dict(item) for item in _state.evicted],
        }


def loaded_models() -> dict[str, Any]:
    """The model budget in force, the warm servers this process has loaded (most recently
    used first) and the ones the budget stopped (public: ``jazzmine.local.loaded_models``)."""
    return snapshot()
