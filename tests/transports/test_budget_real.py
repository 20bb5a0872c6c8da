"""The model budget on the real llama-server (``transports/server/budget.py``): three
models alternating under a budget of two, a busy server never stopped, a pinned one kept.

The three "models" are SmolLM2 under three names (symbolic links): a server's key is the
path it is given (its directory resolved, its name kept), so each name is its own server.
Servers are counted from /proc among this process's own descendants that run llama-server.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.probes import children_running
from helpers.real_calls import LISTING, QUESTION

from jazzmine.local import (
    LLMInvalidRequestError,
    LLMTimeoutError,
    LocalLLM,
    loaded_models,
    set_model_budget,
)
from jazzmine.local.transports.server.transport import model_key


@pytest.fixture
def three_models(tmp_path: Path, model_path: str) -> list[str]:
    paths = []
    for name in ("alpha", "beta", "gamma"):
        target = tmp_path / f"{name}.gguf"
        target.symlink_to(model_path)
        paths.append(str(target))
    return paths


@pytest.fixture
def budget_of() -> Iterator[None]:
    yield
    set_model_budget()  # back to the environment's or the default


@pytest.fixture
def server_bin(completion_bin: str) -> str:
    return os.path.join(os.path.dirname(os.path.realpath(completion_bin)), "llama-server")


class Counter:
    """Samples how many llama-server children this process has, every 10 ms."""

    def __init__(self, server_bin: str) -> None:
        self.server_bin = server_bin
        self.most = 0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self.most = max(self.most, len(children_running(self.server_bin)))
            self.samples += 1

    def __enter__(self) -> Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)


def test_three_models_alternating_under_a_budget_of_two(
    budget_of: None, three_models: list[str], completion_bin: str, server_bin: str
) -> None:
    set_model_budget(max_models=2)
    llms = [
        LocalLLM(binary_path=completion_bin, model=path, keep_alive="5m", seed=7, max_tokens=16)
        for path in three_models
    ]
    try:
        evicted_before = loaded_models()["evictions"]
        replies = []
        started = time.monotonic()
        with Counter(server_bin) as counter:
            for turn in range(30):
                reply = llms[turn % 3].generate(QUESTION)
                replies.append(reply)
                assert len(children_running(server_bin)) <= 2
        elapsed = time.monotonic() - started
        # The same weights under three names: every answer is the one a per-call run gives.
        expected = LocalLLM(
            binary_path=completion_bin, model=three_models[0], seed=7, max_tokens=16
        ).generate(QUESTION)
        assert [r.text for r in replies] == [expected.text] * 30 and expected.text
        assert counter.most <= 2 and counter.samples > 50
        # Round robin over three with room for two: every call after the first two loads
        # its model again, stopping the least recently used (the next one in the cycle).
        state = loaded_models()
        assert state["evictions"] - evicted_before == 28
        # Turn t (t >= 2) stops the model of turn t - 2: the last three were beta, gamma, alpha.
        assert [e["model"] for e in state["evicted"][-3:]] == [
            model_key(three_models[i]) for i in (1, 2, 0)
        ]
        metrics = replies[-1].api_metrics
        assert metrics is not None and metrics["evicted_models"] - evicted_before == 28
        assert len(metrics["loaded_models"]) == 2
        assert metrics["model_budget"]["max_models"] == 2
        print(f"\n30 calls, 3 models, budget 2: {elapsed:.1f} s, most servers alive {counter.most}")
    finally:
        for llm in llms:
            llm.close()
    assert children_running(server_bin) == []


def test_two_models_under_a_budget_of_two_are_never_evicted(
    budget_of: None, three_models: list[str], completion_bin: str
) -> None:
    set_model_budget(max_models=2)
    llms = [
        LocalLLM(binary_path=completion_bin, model=p, keep_alive="5m", max_tokens=4)
        for p in three_models[:2]
    ]
    try:
        before = loaded_models()["evictions"]
        for turn in range(6):
            llms[turn % 2].generate(QUESTION)
        assert loaded_models()["evictions"] == before
        assert [llm.transport.server.starts for llm in llms] == [1, 1]  # type: ignore[attr-defined]
    finally:
        for llm in llms:
            llm.close()


def test_a_busy_server_is_never_stopped_the_newcomer_waits_within_its_timeout(
    budget_of: None, three_models: list[str], completion_bin: str, server_bin: str
) -> None:
    set_model_budget(max_models=1)
    busy = LocalLLM(
        binary_path=completion_bin, model=three_models[0], keep_alive="5m", max_tokens=400
    )
    other = LocalLLM(
        binary_path=completion_bin,
        model=three_models[1],
        keep_alive="5m",
        max_tokens=4,
        timeout=1.0,
    )
    patient = LocalLLM(
        binary_path=completion_bin,
        model=three_models[1],
        keep_alive="5m",
        max_tokens=4,
        timeout=120,
    )
    try:
        busy.generate(QUESTION)  # loaded
        server = busy.transport.server  # type: ignore[attr-defined]
        pid = server.pid
        outcome: dict[str, object] = {}
        thread = threading.Thread(target=lambda: outcome.update(reply=busy.generate(LISTING)))
        thread.start()
        deadline = time.monotonic() + 30
        while server.active == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.active == 1
        started = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="model budget") as caught:
            other.generate(QUESTION)
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10, waited
        assert "alpha.gguf" in str(caught.value)
        assert server.pid == pid and server.running()  # never stopped
        # Given time, the newcomer gets the room once the busy call is done.
        reply = patient.generate(QUESTION)
        thread.join(60)
        assert not thread.is_alive()
        assert outcome["reply"].text  # type: ignore[attr-defined]
        assert reply.text and reply.api_metrics is not None
        assert reply.api_metrics["loaded_models"] == [model_key(three_models[1])]
        assert len(children_running(server_bin)) == 1
    finally:
        busy.close()
        other.close()
        patient.close()


def test_a_pinned_server_is_never_evicted(
    budget_of: None, three_models: list[str], completion_bin: str
) -> None:
    set_model_budget(max_models=1)
    pinned = LocalLLM(
        binary_path=completion_bin, model=three_models[0], keep_alive=-1, max_tokens=4
    )
    other = LocalLLM(
        binary_path=completion_bin, model=three_models[1], keep_alive="5m", max_tokens=4, timeout=30
    )
    try:
        pinned.generate(QUESTION)
        pid = pinned.transport.server.pid  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(LLMInvalidRequestError, match="pinned"):
            other.generate(QUESTION)
        assert time.monotonic() - started < 5  # said at once: waiting would not help
        assert pinned.transport.server.pid == pid  # type: ignore[attr-defined]
        pinned.close()  # closing the pinned one frees the room
        assert other.generate(QUESTION).text
    finally:
        pinned.close()
        other.close()
