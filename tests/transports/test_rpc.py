"""llama.cpp RPC workers on the loopback interface, started with `jazzmine worker`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.probes import descendants, environment_of
from helpers.real_calls import LISTING

from jazzmine.local import LLMConnectionError, LLMInternalError, LocalLLM
from jazzmine.local.cli.main import worker_banner
from jazzmine.local.transports.rpc import parse_servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Worker:
    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jazzmine.local.cli.main",
                "worker",
                "--port",
                str(self.port),
                "--threads",
                "1",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.banner = [self.process.stdout.readline() for _ in range(2)]
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("worker did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def workers(real_build: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Worker]]:
    # The workers' OpenMP settings are jazzmine's, not whatever the runner exports.
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    started = [Worker("--no-cache"), Worker("--no-cache")]
    yield started
    for worker in started:
        worker.stop()


def test_addresses_are_validated_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_servers("127.0.0.1:50052,[::1]:7000, gpu-box.lan:1") == (
        "127.0.0.1:50052",
        "[::1]:7000",
        "gpu-box.lan:1",
    )
    for bad in ("127.0.0.1", "host:0", "host:99999", ":50052", "bad host:1", "[zz]:1", ""):
        with pytest.raises(ValueError):
            LocalLLM(binary_path="/bin/true", model="x.gguf", rpc_servers=[bad])
    monkeypatch.setenv("JAZZMINE_RPC_SERVERS", "127.0.0.1:7001,127.0.0.1:7002")
    llm = LocalLLM(binary_path="/bin/true", model="x.gguf", keep_alive=0)
    assert llm.config.rpc_servers == ("127.0.0.1:7001", "127.0.0.1:7002")
    assert "-ngl" in llm.config.offload_args() and "--rpc" in llm.config.offload_args()


def test_the_build_has_the_rpc_backend(real_build: tuple[Path, Path], completion_bin: str) -> None:
    from jazzmine.local.transports.binary import probe

    assert probe(completion_bin).accepts("--rpc")
    assert (real_build[0] / "ggml-rpc-server").exists()


def test_worker_banner_warns_off_loopback() -> None:
    assert not any("WARNING" in line for line in worker_banner("127.0.0.1", 50052))
    assert any("trusted network" in line for line in worker_banner("192.0.2.10", 50052))


def test_per_call_and_warm_replies_through_two_workers(
    workers: list[Worker], completion_bin: str, base_model_path: str
) -> None:
    # The larger base model (253 MB), so the weights the workers hold are plain to see.
    addresses = [worker.address for worker in workers]
    assert workers[0].banner[0].strip().endswith(workers[0].address)
    # `jazzmine worker` became the worker binary, with the short OpenMP spin.
    assert environment_of(workers[0].process.pid).get("GOMP_SPINCOUNT") == "1000"
    per_call = LocalLLM(
        binary_path=completion_bin,
        model=base_model_path,
        max_tokens=8,
        rpc_servers=addresses,
        keep_alive=0,
        tensor_split=[1, 1],
    )
    reply = per_call.generate(LISTING)
    assert reply.text and reply.usage.completion_tokens == 8

    idle = [rss_mib(worker.process.pid) for worker in workers]
    warm = LocalLLM(
        binary_path=completion_bin, model=base_model_path, max_tokens=8, rpc_servers=addresses
    )
    assert warm.keep_alive == 300  # warm by default: the weights are sent once
    try:
        assert warm.generate(LISTING).usage.completion_tokens == 8
        holding = [rss_mib(worker.process.pid) for worker in workers]
        # The 253 MB model is split between the two workers.
        assert sum(holding) - sum(idle) > 150
    finally:
        warm.close()
    end = time.monotonic() + 5  # a worker frees the weights once it sees the client go
    while sum(rss_mib(w.process.pid) for w in workers) - sum(idle) >= 60:
        assert time.monotonic() < end, "the workers kept the weights after close()"
        time.sleep(0.05)


def test_an_unreachable_worker_is_a_connection_error_naming_it(
    workers: list[Worker], completion_bin: str, model_path: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    for keep_alive in (0, -1):
        llm = LocalLLM(
            binary_path=completion_bin,
            model=model_path,
            max_tokens=4,
            keep_alive=keep_alive,
            rpc_servers=[workers[0].address, dead],
        )
        started = time.monotonic()
        try:
            with pytest.raises(LLMConnectionError, match=dead):
                llm.generate(LISTING)
        finally:
            llm.close()
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("keep_alive", [0, -1])
def test_a_worker_killed_mid_call_is_named_and_nothing_is_left(
    workers: list[Worker], completion_bin: str, model_path: str, keep_alive: int
) -> None:
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        max_tokens=2000,
        keep_alive=keep_alive,
        extra_args=["--ignore-eos"],
        rpc_servers=[w.address for w in workers],
        stop=["\x07"],
    )
    before = descendants(os.getpid())
    try:
        stream = llm.stream(LISTING)
        pieces = [next(stream) for _ in range(3)]
        os.kill(workers[1].process.pid, signal.SIGKILL)
        with pytest.raises(LLMInternalError) as caught:
            for piece in stream:
                pieces.append(piece)
    finally:
        llm.close()
    assert workers[1].address in str(caught.value)
    assert caught.value.partial_text.startswith("".join(pieces[:3]).strip())
    end = time.monotonic() + 2  # what close() stopped may take a moment to leave /proc
    while descendants(os.getpid()) - before and time.monotonic() < end:
        time.sleep(0.05)
    assert descendants(os.getpid()) - before == set()
