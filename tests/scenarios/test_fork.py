"""Forks and dead parents: a forked child never touches its parent's children or server,
works on its own, and nothing outlives the process that owns it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.probes import descendants, process_alive

from jazzmine.local import LocalLLM, MessagePart, system

HI = [MessagePart("user", "Say hi.")]
FORK = multiprocessing.get_context("fork")


def gone_soon(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not process_alive(pid)


def children_of(parent: int, names: tuple[str, ...]) -> set[int]:
    """Processes whose parent is ``parent`` and whose name is one of ``names``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            # The kernel keeps 15 characters of a name: "llama-completio".
            if ppid == parent and name in {candidate[:15] for candidate in names}:
                found.add(int(entry.name))
    return found


def _call_in_child(llm: LocalLLM, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        response = llm.generate(HI)
        metrics = response.api_metrics or {}
        results.put(("ok", response.text, metrics.get("server_pid")))
    except BaseException as error:  # reported to the parent, which fails the test
        results.put(("error", repr(error), None))


@pytest.fixture(params=[None, -1], ids=["per-call", "warm"])
def llm(request: pytest.FixtureRequest, completion_bin: str, model_path: str) -> Iterator[LocalLLM]:
    instance = LocalLLM(
        binary_path=completion_bin, model=model_path, max_tokens=4, keep_alive=request.param
    )
    yield instance
    instance.close()


def test_a_forked_child_makes_its_own_calls_and_leaves_the_parents_alone(llm: LocalLLM) -> None:
    first = llm.generate(HI)  # warm: the parent's server is up
    parent_server = (first.api_metrics or {}).get("server_pid")
    results: multiprocessing.Queue = FORK.Queue()  # type: ignore[type-arg]
    child = FORK.Process(target=_call_in_child, args=(llm, results))
    child.start()
    status, text, child_server = results.get(timeout=120)
    child.join(30)
    assert status == "ok", text
    assert child.exitcode == 0
    if parent_server is not None:
        assert child_server != parent_server  # its own server, not the parent's socket
        assert process_alive(parent_server)  # the child's exit did not stop the parent's server
        assert child_server is not None and gone_soon(child_server)  # it died with the child
    assert llm.generate(HI).text == first.text  # the parent goes on as before


def test_a_fork_while_a_call_runs_leaves_the_parents_call_and_the_childs_limit_alone(
    llm: LocalLLM,
) -> None:
    stream = llm.stream([MessagePart("user", "Count from one to fifty.")], max_tokens=64)
    first_piece = next(stream)
    results: multiprocessing.Queue = FORK.Queue()  # type: ignore[type-arg]
    # max_concurrency is 1 and the parent's call holds it: the child must not wait for it.
    child = FORK.Process(target=_call_in_child, args=(llm, results))
    child.start()
    status, text, _ = results.get(timeout=120)
    child.join(30)
    assert status == "ok", text
    rest = "".join(stream)  # the parent's call was not killed by the child's exit
    assert first_piece + rest == stream.response.text


@pytest.mark.parametrize("portable", [False, True], ids=["linux", "portable"])
@pytest.mark.parametrize("keep_alive", [None, -1], ids=["per-call", "warm"])
def test_a_sigkilled_parent_leaves_no_llama_cpp_process(
    completion_bin: str, model_path: str, keep_alive: int | None, portable: bool
) -> None:
    program = textwrap.dedent(
        f"""
        import sys, threading, time
        from jazzmine.local import LocalLLM, MessagePart, system
        llm = LocalLLM(binary_path={completion_bin!r}, model={model_path!r},
                       keep_alive={keep_alive!r}, max_tokens=100000, n_ctx=4096)
        def work():
            # A long prompt: the child is busy reading it when the parent dies.
            for piece in llm.stream([MessagePart("user", "word " * 3000)]):
                pass
        threading.Thread(target=work, daemon=True).start()
        print("started", flush=True)
        time.sleep(600)
        """
    )
    # The portable path (pipe prompt, lifeline launcher, short socket dir) is macOS's.
    env = {k: v for k, v in os.environ.items() if k != system.PORTABLE_ENV}
    if portable:
        env[system.PORTABLE_ENV] = "1"
    parent = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        spawned: set[int] = set()
        while not spawned and time.monotonic() < deadline:
            # The run itself, given the model: not a `--help` probe (which has no watcher).
            spawned = {
                pid
                for pid in children_of(parent.pid, ("llama-completion", "llama-server"))
                if model_path in _cmdline(pid)
            }
            time.sleep(0.05)
        assert spawned, "the model process never started"
        time.sleep(0.5)
        below = set().union(*(descendants(pid) for pid in spawned))  # a lifeline's watcher
        assert len(below) == (len(spawned) if portable else 0)
    finally:
        parent.send_signal(signal.SIGKILL)  # on a failed check too: nothing left running
        parent.wait()
    assert all(gone_soon(pid, 10) for pid in spawned | below)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_close_in_a_forked_child_does_not_stop_the_parents_server(
    completion_bin: str, model_path: str
) -> None:
    llm = LocalLLM(binary_path=completion_bin, model=model_path, max_tokens=2, keep_alive=-1)
    try:
        server = (llm.generate(HI).api_metrics or {}).get("server_pid")
        assert server is not None
        child = FORK.Process(target=llm.close)
        child.start()
        child.join(30)
        assert child.exitcode == 0 and process_alive(server)
        assert (llm.generate(HI).api_metrics or {}).get("server_pid") == server
    finally:
        llm.close()
    assert gone_soon(server)
