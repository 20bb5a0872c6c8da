"""The model budget's rules (``transports/server/budget.py``) on stand-in servers: least
recently used idle first, busy never, pinned never, waits bounded by the deadline, the
environment and the API; the real-binary runs are in ``test_budget_real``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.gguf_files import write_gguf

from jazzmine.local import LLMInvalidRequestError, LLMTimeoutError
from jazzmine.local.errors import OptionValueError
from jazzmine.local.transports.server import budget


class Stub:
    """What the budget sees of a server: calls in flight, keep_alive, a stop."""

    def __init__(self, name: str, keep_alive: float = 300.0) -> None:
        self.model_path = f"/models/{name}.gguf"
        self.active = 0
        self.keep_alive = keep_alive
        self.pid = None
        self.stopped = False

    def evict_if_idle(self, by: str) -> bool:
        if self.active:
            return False
        self.stopped = True
        return True


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(budget, "_state", budget._State())
    for variable in ("JAZZMINE_MAX_LOADED_MODELS", "JAZZMINE_MAX_LOADED_MIB"):
        monkeypatch.delenv(variable, raising=False)
    yield


def load(stub: Stub, mib: int = 100, deadline: float | None = None) -> None:
    budget.admit(stub, mib, deadline)
    budget.touch(stub)


def test_the_least_recently_used_idle_server_goes_first() -> None:
    budget.set_model_budget(max_models=2)
    a, b, c = Stub("a"), Stub("b"), Stub("c")
    load(a)
    load(b)
    budget.touch(a)  # a used after b
    load(c)
    assert b.stopped and not a.stopped
    state = budget.loaded_models()
    assert [e["model"] for e in state["loaded"]] == [c.model_path, a.model_path]
    assert state["evictions"] == 1 and state["evicted"][0]["model"] == b.model_path


def test_memory_counts_too() -> None:
    budget.set_model_budget(max_models=5, max_mib=250)
    a, b = Stub("a"), Stub("b")
    load(a, 100)
    load(b, 100)
    load(Stub("c"), 100)  # 300 > 250: one goes
    assert a.stopped and not b.stopped
    with pytest.raises(LLMInvalidRequestError, match="more than the whole model budget of 250 MiB"):
        load(Stub("huge"), 300)


def test_a_busy_server_is_never_stopped_and_the_wait_ends_at_the_deadline() -> None:
    budget.set_model_budget(max_models=1)
    busy = Stub("busy")
    load(busy)
    busy.active = 1
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"model budget.*busy\.gguf"):
        load(Stub("new"), deadline=time.monotonic() + 0.3)
    assert 0.3 <= time.monotonic() - started < 3 and not busy.stopped
    # Its call ends while the newcomer waits: the newcomer gets the room at once.
    newcomer = Stub("new")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (load(newcomer), done.set()))
    thread.start()
    time.sleep(0.05)
    assert not done.is_set()
    busy.active = 0
    started = time.monotonic()
    budget.touch(busy)  # what end_request does
    assert done.wait(5) and time.monotonic() - started < 1
    assert busy.stopped
    thread.join()


def test_pinned_servers_are_never_evicted_and_say_so_at_once() -> None:
    budget.set_model_budget(max_models=1)
    pinned = Stub("pinned", keep_alive=-1)
    load(pinned)
    started = time.monotonic()
    with pytest.raises(LLMInvalidRequestError, match=r"pinned.*pinned\.gguf"):
        load(Stub("new"), deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 1 and not pinned.stopped
    budget.unloaded(pinned)  # its LocalLLM closed
    load(Stub("new"))


def test_the_environment_and_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    assert budget.limits() == (3, budget.default_mib())
    assert budget.default_mib() > 0
    monkeypatch.setenv("JAZZMINE_MAX_LOADED_MODELS", "5")
    monkeypatch.setenv("JAZZMINE_MAX_LOADED_MIB", "2048")
    assert budget.limits() == (5, 2048)
    budget.set_model_budget(max_models=1)  # the API wins over the environment
    assert budget.limits() == (1, 2048)
    monkeypatch.setenv("JAZZMINE_MAX_LOADED_MODELS", "two")
    budget.set_model_budget()
    with pytest.raises(OptionValueError, match="JAZZMINE_MAX_LOADED_MODELS"):
        budget.limits()
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(OptionValueError):
            budget.set_model_budget(max_models=bad)  # type: ignore[arg-type]


def test_the_estimate_is_the_file_and_its_kv_cache(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    pairs = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 30)]
    pairs += [("llama.embedding_length", 4, 576), ("llama.attention.head_count", 4, 9)]
    pairs += [("llama.attention.head_count_kv", 4, 3)]
    write_gguf(path, pairs)
    # 30 layers x 4096 positions x 3 KV heads x (64 + 64) x 2 bytes = 90 MiB, plus overhead.
    assert budget.estimate_mib(str(path), 4096) == 90 + budget.OVERHEAD_MIB
    assert budget.estimate_mib(str(tmp_path / "missing.gguf"), 4096) == budget.OVERHEAD_MIB


def test_a_server_is_keyed_by_the_path_given_not_the_file_it_links_to(tmp_path: Path) -> None:
    from jazzmine.local.transports.server.transport import model_key

    (tmp_path / "real").mkdir()
    blob = tmp_path / "real" / "0123abcd"
    blob.write_bytes(b"GGUF")
    link = tmp_path / "m-Q4_K_M-00001-of-00002.gguf"
    link.symlink_to(blob)
    (tmp_path / "via").symlink_to(tmp_path / "real")
    # A split GGUF's first part keeps its name (llama.cpp finds the other parts by it).
    assert model_key(str(link)) == os.path.join(os.path.realpath(tmp_path), link.name)
    assert model_key(str(tmp_path / "via" / "0123abcd")) == os.path.realpath(blob)
