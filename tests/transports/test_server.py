"""Warm mode: LocalLLM on a kept llama-server (``transports/server/transport.py`` speaks to it,
``transports/server/process.py`` starts, shares, idles out and reaps it).

On the real llama-server with the default model, and the base model for the flat format:
the same text as per call, stops on the server side, prompt reuse, parallel slots, freed
slots, timeouts, a killed or unloadable server, the private socket, sharing, and no
server left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.probes import (
    ArgvScanner,
    environment_of,
    own_processes,
    own_tcp_listeners,
    process_alive,
    wait_gone,
    wait_until,
)
from helpers.real_calls import CHATTY, LISTING

from jazzmine.local import (
    LLMInternalError,
    LLMTimeoutError,
    LocalLLM,
    MessagePart,
)

SYSTEM = MessagePart(
    "system", "You are a helpful assistant who answers questions about astronomy. " * 6
)


@pytest.fixture
def warm(completion_bin: str, model_path: str):  # type: ignore[no-untyped-def]
    """Build warm LocalLLMs that are all closed after the test."""
    made: list[LocalLLM] = []

    def build(**options: object) -> LocalLLM:
        options.setdefault("max_tokens", 24)
        options.setdefault("keep_alive", -1)
        options.setdefault("model", model_path)
        llm = LocalLLM(binary_path=completion_bin, seed=3, **options)  # type: ignore[arg-type]
        made.append(llm)
        return llm

    yield build
    for llm in made:
        llm.close()


def server_of(llm: LocalLLM):  # type: ignore[no-untyped-def]
    return llm.transport.server  # type: ignore[attr-defined]


def test_environment_sets_keep_alive(monkeypatch: pytest.MonkeyPatch, completion_bin: str) -> None:
    monkeypatch.setenv("JAZZMINE_KEEP_ALIVE", "5m")
    llm = LocalLLM(binary_path=completion_bin)
    assert llm.keep_alive == 300
    llm.close()


def test_a_missing_server_is_a_clear_error_naming_the_paths(
    tmp_path: Path, completion_bin: str
) -> None:
    lone = tmp_path / "llama-completion"
    lone.symlink_to(completion_bin)
    copy = tmp_path / "bin" / "my-llama"
    copy.parent.mkdir()
    copy.write_bytes(Path(completion_bin).read_bytes())
    copy.chmod(0o755)
    with pytest.raises(FileNotFoundError) as caught:
        LocalLLM(binary_path=str(copy), keep_alive="1m")
    assert str(tmp_path / "bin" / "llama-server") in str(caught.value)
    with pytest.raises(FileNotFoundError, match="nowhere/llama-server"):
        LocalLLM(binary_path=completion_bin, keep_alive="1m", server_path="/nowhere/llama-server")


def test_same_text_as_per_call_in_every_method(warm, completion_bin: str, model_path: str) -> None:  # type: ignore[no-untyped-def]
    per_call = LocalLLM(binary_path=completion_bin, model=model_path, seed=3, max_tokens=24)
    expected = per_call.generate(LISTING)
    llm = warm()
    first = llm.generate(LISTING)
    assert first.text == expected.text
    assert first.finish_reason == expected.finish_reason == "length"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (
        expected.usage.prompt_tokens,
        expected.usage.completion_tokens,
    )
    assert first.api_metrics is not None
    assert (
        first.api_metrics["usage_source"] == "reported"
        and first.api_metrics["transport"] == "server"
    )
    pieces = list(llm.stream(LISTING))
    assert "".join(pieces) == expected.text and len(pieces) >= 8

    async def both() -> tuple[str, str]:
        reply = await llm.agenerate(LISTING)
        return reply.text, "".join([p async for p in llm.astream(LISTING)])

    assert asyncio.run(both()) == (expected.text, expected.text)
    assert llm.generate(LISTING).text == expected.text  # a repeated call too


def test_stops_end_the_reply_on_the_server_side(  # type: ignore[no-untyped-def]
    warm, completion_bin: str, base_model_path: str
) -> None:
    # The base model, given the flattened prompt, goes on to write the user's next turn.
    llm = warm(max_tokens=120, model=base_model_path)
    reply = llm.generate(CHATTY)
    per_call = LocalLLM(
        binary_path=completion_bin, model=base_model_path, seed=3, max_tokens=120
    ).generate(CHATTY)
    assert reply.text == per_call.text and "User:" not in reply.text
    assert reply.finish_reason == "stop"
    assert reply.api_metrics is not None and reply.api_metrics["stop_type"] == "word"
    assert reply.usage.completion_tokens < 120  # the server stopped generating there
    full = warm(max_tokens=40, model=base_model_path).generate(LISTING).text
    stop_word = full.split()[3]
    stopped = warm(max_tokens=40, model=base_model_path).generate(LISTING, stop=[stop_word])
    assert stopped.text == full[: full.index(stop_word)].rstrip()
    assert stopped.finish_reason == "stop"


@pytest.mark.filterwarnings("ignore:.*without producing any text")
def test_a_chats_second_turn_reuses_the_first(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_tokens=16)
    history = [SYSTEM, *LISTING]
    first = llm.generate(history)
    assert first.api_metrics is not None and first.api_metrics["prompt_tokens_reused"] == 0
    history += [MessagePart("assistant", first.text), MessagePart("user", "And their moons?")]
    second = llm.generate(history)
    assert second.api_metrics is not None
    reused = second.api_metrics["prompt_tokens_reused"]
    assert reused >= first.usage.prompt_tokens - 1
    assert second.api_metrics["prompt_tokens_evaluated"] == second.usage.prompt_tokens - reused
    assert second.api_metrics["prompt_tokens_evaluated"] < 20


def test_concurrent_calls_share_one_server_in_parallel_slots(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_concurrency=2, max_tokens=16)

    async def burst() -> list[object]:
        questions = [f"Give me fact number {i} about the Moon." for i in range(4)]
        return list(
            await asyncio.gather(*(llm.agenerate([MessagePart("user", q)]) for q in questions))
        )

    replies = asyncio.run(burst())
    assert len(replies) == 4
    slots = {reply.api_metrics["id_slot"] for reply in replies}  # type: ignore[attr-defined]
    pids = {reply.api_metrics["server_pid"] for reply in replies}  # type: ignore[attr-defined]
    assert slots == {0, 1} and len(pids) == 1


def test_an_abandoned_stream_frees_its_slot_at_once(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_concurrency=1, max_tokens=3000, extra_args=["--ignore-eos"], stop=["\x07"])
    long_stream = llm.stream(LISTING)
    next(long_stream)
    long_stream.close()  # type: ignore[attr-defined]
    started = time.monotonic()
    reply = llm.generate(LISTING, max_tokens=4)
    # 3000 tokens take over a minute here; the slot was free at once.
    assert time.monotonic() - started < 10 and reply.usage.completion_tokens == 4

    async def cancel_then_call() -> float:
        first_piece = asyncio.Event()

        async def consume() -> None:
            async for _ in llm.astream(LISTING):
                first_piece.set()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(first_piece.wait(), 120)  # it holds the slot now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        begun = time.monotonic()
        await llm.agenerate(LISTING, max_tokens=4)
        return time.monotonic() - begun

    assert asyncio.run(cancel_then_call()) < 10


def test_a_timeout_ends_that_request_alone(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_tokens=3000, extra_args=["--ignore-eos"], timeout=15)
    llm.generate(LISTING, max_tokens=2)  # load first; the timeout covers the whole call
    pid = server_of(llm).pid
    slow = warm(max_tokens=3000, extra_args=["--ignore-eos"], timeout=1.5)
    assert server_of(slow).pid == pid  # same options: the same server
    with pytest.raises(LLMTimeoutError) as caught:
        slow.generate(LISTING)
    assert caught.value.partial_text
    assert server_of(llm).pid == pid and server_of(llm).running()
    assert llm.generate(LISTING, max_tokens=2).usage.completion_tokens == 2


def test_a_server_killed_mid_call_gives_a_typed_error_and_the_next_call_recovers(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_tokens=3000, extra_args=["--ignore-eos"])
    stream = llm.stream(LISTING)
    pieces = [next(stream) for _ in range(3)]
    server = server_of(llm)
    old_pid = server.pid
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(LLMInternalError) as caught:
        for piece in stream:
            pieces.append(piece)
    assert caught.value.partial_text.startswith("".join(pieces[:3]).strip())
    assert "died" in str(caught.value)
    reply = llm.generate(LISTING, max_tokens=3)
    assert reply.usage.completion_tokens == 3 and server.pid != old_pid


def test_a_model_that_fails_to_load_raises_with_stderr_and_is_retried(
    tmp_path: Path, completion_bin: str
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    llm = LocalLLM(binary_path=completion_bin, model=str(broken), keep_alive="1m")
    try:
        for _ in range(2):
            with pytest.raises(LLMInternalError) as caught:
                llm.generate(LISTING)
            assert "before the model was loaded" in str(caught.value)
            assert "broken.gguf" in caught.value.stderr
        assert server_of(llm).starts == 2
        assert not llm.health_check()
    finally:
        llm.close()


LISTENER = """
import os, socket, sys, time
if {detach} and os.fork():
    os._exit(0)  # the listener is left to init: not a descendant of the test
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(os.getpid(), s.getsockname()[1], flush=True)
time.sleep(120)
"""


def start_listener(detach: bool) -> tuple[subprocess.Popen[str], int, int]:
    """A process listening on a loopback port: (what was started, its pid, the port)."""
    program = LISTENER.format(detach=detach)
    started = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert started.stdout is not None
    pid, port = map(int, started.stdout.readline().split())
    started.stdout.close()
    return started, pid, port


def test_the_listener_probe_sees_this_process_tree_and_nothing_else() -> None:
    before = own_tcp_listeners()
    started: list[tuple[subprocess.Popen[str], int]] = []
    try:
        detached, foreign, foreign_port = start_listener(detach=True)
        started.append((detached, foreign))
        detached.wait(timeout=60)
        assert foreign not in own_processes()
        with socket.create_connection(("127.0.0.1", foreign_port), timeout=30):
            pass  # it listens, on this machine: still not ours
        assert own_tcp_listeners() == before
        child, pid, _ = start_listener(detach=False)
        started.append((child, pid))
        with socket.socket() as mine:
            mine.bind(("127.0.0.1", 0))
            mine.listen()
            assert len(own_tcp_listeners() - before) == 2  # the child's and this process's
    finally:
        for process, pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            process.wait(timeout=60)
    assert own_tcp_listeners() == before


def test_idle_stop_close_and_the_private_socket_directory(warm) -> None:  # type: ignore[no-untyped-def]
    # Only this process's own sockets count: another program may open a TCP port meanwhile.
    tcp_before = own_tcp_listeners()
    idle = warm(keep_alive=1.0, n_ctx=1024)
    idle.generate(LISTING)
    server = server_of(idle)
    directory, pid = server.directory, server.pid
    assert pid in own_processes()  # so its sockets are among those looked at
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    assert mode == 0o700
    assert stat.S_ISSOCK(os.stat(server.socket_path).st_mode)
    assert own_tcp_listeners() - tcp_before == set()
    # A second of idleness stops it and removes its directory (a bound, not a measurement).
    assert wait_until(lambda: not process_alive(pid) and not os.path.exists(directory))
    assert idle.generate(LISTING, max_tokens=2).usage.completion_tokens == 2  # starts again

    kept = warm(keep_alive=-1, n_ctx=1536)
    kept.generate(LISTING, max_tokens=2)
    server = server_of(kept)
    directory, pid = server.directory, server.pid
    assert kept.health_check()
    kept.close()
    assert not process_alive(pid) and not os.path.exists(directory)


def test_instances_with_the_same_options_share_one_server(warm) -> None:  # type: ignore[no-untyped-def]
    first, second = warm(n_ctx=768), warm(n_ctx=768)
    other = warm(n_ctx=896)
    for llm in (first, second, other):
        llm.generate(LISTING, max_tokens=2)
    assert server_of(first) is server_of(second) and server_of(first) is not server_of(other)
    shared_pid = server_of(first).pid
    first.close()
    assert process_alive(shared_pid)  # one sharer left
    second.close()
    assert not process_alive(shared_pid)


def test_killing_the_python_process_leaves_no_server(completion_bin: str, model_path: str) -> None:
    program = f"""
import sys, threading, time
from jazzmine.local import LocalLLM, MessagePart
def work():
    # Started from a short-lived thread: the server must still live until the process dies.
    llm = LocalLLM(binary_path={completion_bin!r}, model={model_path!r}, keep_alive=-1,
                   max_tokens=2)
    llm.generate([MessagePart("user", "hi")])
    print(llm.transport.server.pid, flush=True)
thread = threading.Thread(target=work); thread.start(); thread.join()
print("joined", flush=True)
time.sleep(600)
"""
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    server_pid = int(child.stdout.readline())
    assert child.stdout.readline() == "joined\n"
    # A death tied to the thread would come as it ends: a moment to let it show.
    time.sleep(1.0)
    assert process_alive(server_pid), "the server died with the thread that started the call"
    child.kill()
    child.wait()
    assert wait_gone(server_pid)


def test_the_prompt_stays_out_of_every_argv(warm, model_path: str) -> None:  # type: ignore[no-untyped-def]
    secret = "warm-secret-5d2a"
    llm = warm()
    with ArgvScanner(secret, control=os.path.realpath(model_path)) as scanner:
        llm.generate([MessagePart("user", f"Remember {secret}.")])
    assert scanner.seen == 0 and scanner.control_seen > 0


def test_close_during_calls_says_it_ended_them(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_concurrency=2, max_tokens=3000, extra_args=["--ignore-eos"], stop=["\x07"])
    errors: list[LLMInternalError] = []
    pieces: list[str] = []

    def sync_call() -> None:
        try:
            for piece in llm.stream(LISTING):
                pieces.append(piece)
        except LLMInternalError as error:
            errors.append(error)

    async_pieces: list[str] = []

    async def async_stream() -> None:
        async for piece in llm.astream(LISTING):
            async_pieces.append(piece)

    async def async_call_then_close() -> LLMInternalError:
        task = asyncio.ensure_future(async_stream())
        give_up = time.monotonic() + 120
        while len(pieces) < 3 or len(async_pieces) < 3:
            assert not task.done() and worker.is_alive() and time.monotonic() < give_up
            await asyncio.sleep(0.05)
        await llm.aclose()
        with pytest.raises(LLMInternalError) as caught:
            await task
        return caught.value

    worker = threading.Thread(target=sync_call)
    worker.start()
    async_error = asyncio.run(async_call_then_close())
    worker.join(timeout=10)
    assert not worker.is_alive() and len(errors) == 1
    for error in (errors[0], async_error):
        assert "LocalLLM.close() ended this call" in str(error)
    assert errors[0].partial_text.startswith("".join(pieces[:3]).strip())
    assert async_error.partial_text.startswith("".join(async_pieces[:3]).strip())


def test_the_server_gets_a_short_openmp_spin(warm, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    llm = warm()
    llm.generate(LISTING, max_tokens=2)
    server = server_of(llm)
    assert os.path.basename(os.path.realpath(f"/proc/{server.pid}/exe")) == "llama-server"
    assert environment_of(server.pid).get("GOMP_SPINCOUNT") == "1000"


# ---------- calls longer than the slots (n_ctx left to LocalLLM) ----------
# About 4,300 tokens with SmolLM2's template: more than a default 4,096-token slot, less
# than the model's trained 8,192.
LONGER_THAN_A_SLOT = [MessagePart("user", " ".join(f"w{i}" for i in range(1070)))]
LONGER_THAN_THE_MODEL = [MessagePart("user", " ".join(f"w{i}" for i in range(2200)))]
SHORT = [MessagePart("user", "Say OK.")]
COUNTING = [MessagePart("user", "Count from 1 to 100, separated by commas.")]


def test_a_prompt_longer_than_the_slots_gets_a_larger_server(warm) -> None:  # type: ignore[no-untyped-def]
    # Per call, llama-completion's context is sized to this prompt (test_percall.py);
    # running it there too would double the longest call of this file.
    llm = warm(max_tokens=1)
    assert llm.generate(SHORT).api_metrics["server_context"] == 4096  # type: ignore[index]
    small = server_of(llm).pid
    reply = llm.generate(LONGER_THAN_A_SLOT)
    metrics = reply.api_metrics or {}
    assert reply.usage.prompt_tokens > 4096 and reply.usage.completion_tokens == 1
    assert metrics["server_context"] == 8192 and metrics["server_pid"] != small
    # A short call afterwards stays on the larger server; the smaller one is gone.
    after = llm.generate(SHORT).api_metrics or {}
    assert after["server_pid"] == metrics["server_pid"]
    assert wait_gone(small)


def test_a_prompt_over_the_models_context_is_the_same_error_in_both_modes(  # type: ignore[no-untyped-def]
    warm, completion_bin: str, model_path: str
) -> None:
    from jazzmine.local import LLMContextLengthError

    per_call = LocalLLM(binary_path=completion_bin, model=model_path, max_tokens=1)
    llm = warm(max_tokens=1)
    errors = []
    for each in (per_call, llm):
        with pytest.raises(LLMContextLengthError) as caught:
            each.generate(LONGER_THAN_THE_MODEL)
        errors.append(caught.value)
    assert errors[0].prompt_tokens == errors[1].prompt_tokens > 8192
    for error in errors:
        assert str(error).startswith(
            f"the prompt is {error.prompt_tokens} tokens, which does not fit"
        )
        assert error.context_size is not None and 8188 <= error.context_size <= 8192
    # No larger server was started for a call no server could hold.
    assert llm.transport.grown == 0  # type: ignore[attr-defined]
    assert llm.generate(SHORT).api_metrics["server_context"] == 4096  # type: ignore[index]


def test_a_chosen_context_is_kept_and_the_refusal_stands(warm) -> None:  # type: ignore[no-untyped-def]
    from jazzmine.local import LLMContextLengthError

    llm = warm(n_ctx=4096, max_tokens=1)
    with pytest.raises(LLMContextLengthError) as caught:
        llm.generate(LONGER_THAN_A_SLOT)
    assert caught.value.context_size == 4096
    assert llm.transport.grown == 0  # type: ignore[attr-defined]


def test_a_reply_the_slot_has_no_room_for_moves_to_larger_slots_first(  # type: ignore[no-untyped-def]
    warm,
) -> None:
    llm = warm(max_tokens=4100)  # a short prompt, but the prompt and max_tokens pass 4,096
    first = llm.generate(SHORT).api_metrics or {}
    assert first["server_context"] == 8192
    # A newcomer that leaves the context to LocalLLM joins the larger server.
    other = warm(max_tokens=4)
    assert other.generate(SHORT).api_metrics["server_pid"] == first["server_pid"]  # type: ignore[index]
    # One that chose its context does not.
    chosen = warm(max_tokens=4, n_ctx=2048)
    assert chosen.generate(SHORT).api_metrics["server_pid"] != first["server_pid"]  # type: ignore[index]


def test_calls_in_flight_finish_on_the_smaller_server_which_then_stops(warm) -> None:  # type: ignore[no-untyped-def]
    llm = warm(max_concurrency=2, max_tokens=48, temperature=0)
    llm.generate(SHORT, max_tokens=1)
    small = server_of(llm).pid
    pieces: list[str] = []
    finished = []
    started = threading.Event()

    def count() -> None:
        stream = llm.stream(COUNTING)
        for piece in stream:
            pieces.append(piece)
            started.set()
        finished.append(stream.response)

    worker = threading.Thread(target=count)
    worker.start()
    assert started.wait(120)
    grown = llm.generate(SHORT, max_tokens=4100).api_metrics or {}
    worker.join(timeout=300)
    assert not worker.is_alive() and len(finished) == 1
    # The call on the smaller server ran to its own end, uncut by the move.
    response = finished[0]
    assert response.api_metrics["server_pid"] == small
    assert response.finish_reason == "length" and response.usage.completion_tokens == 48
    assert grown["server_pid"] != small and grown["server_context"] == 8192
    assert wait_gone(small)
