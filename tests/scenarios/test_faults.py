"""LocalLLM under faults and hostile input: never wedged, nothing leaked, prompt private.

Fake binaries (tests/helpers/fakes.py) stand in only where the real llama.cpp cannot show the
fault on demand: a crash by signal, a hang, a flood, bytes that are not UTF-8.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import fakes
from helpers.probes import ArgvScanner, children_running, open_fds, process_alive

from jazzmine.local import (
    LLMInternalError,
    LLMInvalidRequestError,
    LLMTimeoutError,
    LocalLLM,
    MessagePart,
)

pytestmark = pytest.mark.faults
HELLO = [MessagePart("user", "hello")]


@pytest.fixture
def fake(make_script: Callable[..., str], tmp_path: Path) -> Callable[..., tuple[LocalLLM, Path]]:
    """A LocalLLM over a fake binary; returns it with the file its pids are written to."""

    def build(source: str, **env_and_options: object) -> tuple[LocalLLM, Path]:
        pid_file = tmp_path / f"pids-{time.monotonic_ns()}"
        env = {"FAKE_PID_FILE": str(pid_file), "PATH": os.environ.get("PATH", "")}
        options = {k: v for k, v in env_and_options.items() if not k.startswith("FAKE_")}
        env.update({k: str(v) for k, v in env_and_options.items() if k.startswith("FAKE_")})
        script = make_script(f"fake-{time.monotonic_ns()}", source)
        return LocalLLM(binary_path=script, model="fake", env=env, **options), pid_file  # type: ignore[arg-type]

    return build


def pids_in(pid_file: Path) -> list[int]:
    return [int(line) for line in pid_file.read_text().split()] if pid_file.exists() else []


def assert_all_gone(pid_file: Path, within: float = 1.0) -> None:
    pids = pids_in(pid_file)
    assert pids, "the fake never started"
    end = time.monotonic() + within
    while any(process_alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.02)
    assert not [pid for pid in pids if process_alive(pid)], "a child outlived its call"


# ---------- bad input ----------


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([], "empty"),
        ([MessagePart("user", "ok"), MessagePart("robot", "hi")], "messages[1]"),
        ([MessagePart("user", 42)], "messages[0]"),  # type: ignore[arg-type]
        ([MessagePart("user", "ok"), MessagePart("user", "a\x00b")], "NUL"),
        ("hello", "list"),
    ],
)
def test_bad_messages_raise_invalid_request_naming_the_message(
    messages: object, words: str
) -> None:
    llm = LocalLLM(binary_path="/nonexistent", model="x")
    with pytest.raises(LLMInvalidRequestError, match=words.replace("[", r"\[")):
        llm.generate(messages)  # type: ignore[arg-type]


def test_bad_options_raise_at_construction() -> None:
    with pytest.raises(LLMInvalidRequestError):
        LocalLLM(binary_path="/bin/true", model="x", max_tokens=0)
    with pytest.raises(ValueError, match="network"):
        LocalLLM(binary_path="/bin/true", model="x", extra_args=["-hf", "org/model"])
    with pytest.raises(ValueError):
        LocalLLM(binary_path="/bin/true", model="x", max_concurrency=0)


# ---------- crashes keep the partial text ----------


@pytest.mark.parametrize("signal_name", ["SIGSEGV", "SIGILL"])
def test_crash_by_signal_mid_stream_yields_then_raises(
    fake: Callable[..., tuple[LocalLLM, Path]], signal_name: str
) -> None:
    llm, pid_file = fake(fakes.CRASH, FAKE_SIGNAL=signal_name)
    pieces: list[str] = []
    with pytest.raises(LLMInternalError) as caught:
        for piece in llm.stream(HELLO):
            pieces.append(piece)
    assert "".join(pieces) == "Hello from the model"
    assert caught.value.partial_text == "Hello from the model"
    assert caught.value.signal_name == signal_name and signal_name in str(caught.value)
    assert "ggml_abort" in caught.value.stderr
    if signal_name == "SIGILL":
        assert "CPU features" in str(caught.value)
    with pytest.raises(LLMInternalError) as again:
        llm.generate(HELLO)
    assert again.value.partial_text == "Hello from the model"
    assert_all_gone(pid_file)


def test_non_zero_exit_carries_code_stderr_and_partial_text(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, _ = fake(fakes.FAIL, FAKE_EXIT=3)

    async def run() -> None:
        await llm.agenerate(HELLO)

    with pytest.raises(LLMInternalError) as caught:
        asyncio.run(run())
    assert caught.value.exit_code == 3
    assert "failed to load model" in caught.value.stderr and "failed to load model" in str(
        caught.value
    )
    assert caught.value.partial_text == "partial"


def test_empty_output_warns_and_returns_an_empty_response(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, _ = fake(fakes.SILENT)
    with pytest.warns(RuntimeWarning, match="without producing any text") as generated:
        response = llm.generate(HELLO)
    assert response.text == "" and response.usage.completion_tokens == 0
    with pytest.warns(RuntimeWarning, match="without producing any text") as streamed:
        assert list(llm.stream(HELLO)) == []

    async def both_async() -> None:
        assert (await llm.agenerate(HELLO)).text == ""
        assert [piece async for piece in llm.astream(HELLO)] == []

    with pytest.warns(RuntimeWarning, match="without producing any text") as awaited:
        asyncio.run(both_async())
    # Each warning points at the caller's line, whichever method it used.
    for record in [*generated, *streamed, *awaited]:
        assert record.filename == __file__


def test_output_that_is_not_utf8_never_raises(fake: Callable[..., tuple[LocalLLM, Path]]) -> None:
    llm, _ = fake(fakes.BAD_UTF8)
    assert llm.generate(HELLO).text == "café \ufffd\ufffd ok"


def test_stdin_is_closed_and_the_echo_is_removed(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, _ = fake(fakes.ECHO)
    assert llm.generate(HELLO).text == "Reply with stdin=''"


# ---------- never wedged: timeouts, floods ----------


def test_timeout_kills_the_child_and_its_children(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, pid_file = fake(fakes.HANG, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        llm.generate(HELLO)
    assert time.monotonic() - started < 2.5
    assert caught.value.partial_text == "thinking"
    assert_all_gone(pid_file)


def test_async_timeout_kills_the_child(fake: Callable[..., tuple[LocalLLM, Path]]) -> None:
    llm, pid_file = fake(fakes.HANG, timeout=1.0)

    async def run() -> list[str]:
        return [piece async for piece in llm.astream(HELLO)]

    with pytest.raises(LLMTimeoutError):
        asyncio.run(run())
    assert_all_gone(pid_file)


@pytest.mark.parametrize("source", [fakes.STDERR_FLOOD, fakes.STDOUT_FLOOD])
def test_floods_on_either_pipe_never_deadlock(
    fake: Callable[..., tuple[LocalLLM, Path]], source: str
) -> None:
    llm, _ = fake(source, timeout=60, FAKE_MEGABYTES=8)
    response = llm.generate(HELLO)
    assert response.text

    async def run() -> str:
        return (await llm.agenerate(HELLO)).text

    assert asyncio.run(run()) == response.text


def test_stderr_flood_is_kept_with_its_end(fake: Callable[..., tuple[LocalLLM, Path]]) -> None:
    source = fakes.STDERR_FLOOD + "\nsys.stderr.write('the real error\\n'); sys.exit(2)\n"
    llm, _ = fake(source, FAKE_MEGABYTES=8)
    with pytest.raises(LLMInternalError) as caught:
        llm.generate(HELLO)
    assert caught.value.stderr.rstrip().endswith("the real error")
    assert "dropped" in caught.value.stderr


# ---------- one owner reaps every child ----------


def test_closing_or_abandoning_a_stream_reaps_the_child(
    completion_bin: str, model_path: str
) -> None:
    # The real binary, made to run long: a reply of 400 tokens takes seconds.
    llm = LocalLLM(
        binary_path=completion_bin, model=model_path, max_tokens=400, extra_args=["--ignore-eos"]
    )

    def assert_gone(pid: int) -> None:
        end = time.monotonic() + 1.0
        while process_alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        assert not process_alive(pid), "a child outlived its call"

    stream = llm.stream(HELLO)
    next(stream)
    (pid,) = children_running(completion_bin)
    stream.close()  # type: ignore[attr-defined]
    assert_gone(pid)

    with pytest.raises(ZeroDivisionError):
        for _ in llm.stream(HELLO):
            (pid,) = children_running(completion_bin)
            raise ZeroDivisionError  # the consumer fails mid-stream
    assert_gone(pid)


def test_aclose_returns_only_once_the_child_is_gone(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, pid_file = fake(fakes.SLOW_WORDS, FAKE_DELAY=0.2)

    async def run() -> None:
        stream = llm.astream(HELLO)
        assert await stream.__anext__()
        await stream.aclose()
        assert_all_gone(pid_file, within=0.0)  # already reaped, not left to the collector

    asyncio.run(run())


def test_cancelling_async_calls_reaps_the_child(fake: Callable[..., tuple[LocalLLM, Path]]) -> None:
    llm, pid_file = fake(fakes.HANG)

    async def running(count: int) -> None:
        """Until ``count`` processes have written their pids: the fake is in its hang."""
        give_up = time.monotonic() + 30
        while len(pids_in(pid_file)) < count:
            assert time.monotonic() < give_up, "the fake never started"
            await asyncio.sleep(0.02)

    async def run() -> None:
        task = asyncio.ensure_future(llm.agenerate(HELLO))
        await running(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def consume() -> None:
            async for _ in llm.astream(HELLO):
                await asyncio.sleep(10)

        streaming = asyncio.ensure_future(consume())
        await running(4)
        streaming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await streaming

    started = time.monotonic()
    asyncio.run(run())
    # The loop's shutdown once spun here until pytest-timeout fired, and passed.
    assert time.monotonic() - started < 30
    assert len(pids_in(pid_file)) == 4  # two fakes, each with a grandchild
    assert_all_gone(pid_file)


def test_many_calls_leak_no_process_or_descriptor(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, pid_file = fake(fakes.SLOW_WORDS, FAKE_WORDS=3, FAKE_DELAY=0)
    for _ in range(3):
        llm.generate(HELLO)  # warm up lazily created descriptors
    before = open_fds()

    async def many() -> None:
        await asyncio.gather(*(llm.agenerate(HELLO) for _ in range(30)))

    for _ in range(30):
        llm.generate(HELLO)
    asyncio.run(many())
    assert open_fds() - before == set()
    assert_all_gone(pid_file)


def test_max_concurrency_bounds_children_and_the_wait_counts_against_timeout(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, pid_file = fake(fakes.SLOW_WORDS, FAKE_WORDS=10, FAKE_DELAY=0.03, max_concurrency=2)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(process_alive(pid) for pid in pids_in(pid_file)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()

    async def burst() -> list[str]:
        replies = await asyncio.gather(*(llm.agenerate(HELLO) for _ in range(6)))
        return [reply.text for reply in replies]

    try:
        texts = asyncio.run(burst())
    finally:
        done.set()
        watcher.join()
    assert len(set(texts)) == 1 and peak == 2

    slow, _ = fake(fakes.HANG, max_concurrency=1, timeout=1.0)

    async def queued() -> None:
        await asyncio.gather(slow.agenerate(HELLO), slow.agenerate(HELLO))

    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        asyncio.run(queued())
    assert time.monotonic() - started < 2.5


# ---------- the prompt stays private and arrives intact ----------


def test_the_prompt_never_appears_in_any_argv(completion_bin: str, model_path: str) -> None:
    secret = "patient-record-7c1e9a"
    llm = LocalLLM(binary_path=completion_bin, model=model_path, max_tokens=48)
    with ArgvScanner(secret, control=model_path) as scanner:
        llm.generate([MessagePart("user", f"Summarise {secret} please.")])
    assert scanner.seen == 0 and scanner.control_seen > 0


def test_backslashes_reach_the_model_byte_for_byte(
    completion_bin: str, base_model_path: str
) -> None:
    # With llama.cpp's own prompt display on, its stdout starts with the prompt it saw:
    # the spec's flattened one, which the base model (no chat template) is given.
    content = "Open C:\\new\\table and \\x41 \\\\ done"
    llm = LocalLLM(
        binary_path=completion_bin,
        model=base_model_path,
        max_tokens=1,
        extra_args=["--display-prompt"],
    )
    response = llm.generate([MessagePart("user", content)])
    # The echoed "\nAssistant:" is itself a next-turn marker: the reply ends there, and
    # whether the space after it was read too depends on how stdout was chunked.
    assert response.raw.startswith("User: " + content + "\nAssistant:")


def test_prompts_far_over_128_kib_work(completion_bin: str, base_model_path: str) -> None:
    # Runs of spaces are single tokens for Gemma (the base model), so this is long in
    # bytes, short in tokens.
    filler = (" " * 31 + "x") * 5000
    assert len(filler.encode()) > 150_000
    llm = LocalLLM(
        binary_path=completion_bin, model=base_model_path, max_tokens=2, n_ctx=0, timeout=240
    )
    response = llm.generate([MessagePart("user", filler + "\nSay ok.")])
    assert response.usage.prompt_tokens > 5000


def test_a_p_only_binary_rejects_an_oversized_prompt_clearly(
    fake: Callable[..., tuple[LocalLLM, Path]],
) -> None:
    llm, pid_file = fake(fakes.ECHO)
    with pytest.raises(LLMInvalidRequestError, match="limit"):
        llm.generate([MessagePart("user", "x" * 200_000)])
    assert not pid_file.exists()


def test_env_restricts_the_childs_environment(make_script: Callable[..., str]) -> None:
    script = make_script(
        "env-llm",
        """
        import os, sys
        if "--help" in sys.argv: print("usage: -p PROMPT"); sys.exit(0)
        print(",".join(sorted(k for k in os.environ if k != "LC_CTYPE")))
        """,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            LocalLLM(binary_path=script, model="x", env={"ONLY": "1"}).generate(HELLO).text
            == "ONLY"
        )


def test_interpreter_exit_stops_children_of_abandoned_calls(
    make_script: Callable[..., str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    hang = make_script("hang", fakes.HANG)
    program = f"""
import sys
from jazzmine.local import LocalLLM, MessagePart
llm = LocalLLM(binary_path={hang!r}, model="x", env={{"FAKE_PID_FILE": {str(pid_file)!r}}})
stream = llm.stream([MessagePart("user", "hi")])
next(stream)  # the child is running; the program now exits without closing the stream
sys.exit(0)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert_all_gone(pid_file)


def test_close_during_calls_ends_their_children(fake: Callable[..., tuple[LocalLLM, Path]]) -> None:
    llm, pid_file = fake(fakes.HANG, max_concurrency=4)
    errors: list[BaseException] = []
    sync_pieces: list[str] = []
    async_pieces: list[str] = []

    def sync_call() -> None:
        try:
            for piece in llm.stream(HELLO):
                sync_pieces.append(piece)
        except LLMInternalError as error:
            errors.append(error)

    async def async_call() -> None:
        async for piece in llm.astream(HELLO):
            async_pieces.append(piece)

    async def async_call_then_close() -> BaseException | None:
        task = asyncio.ensure_future(async_call())
        give_up = time.monotonic() + 30
        while not (sync_pieces and async_pieces):  # both children are running
            assert not task.done() and time.monotonic() < give_up
            await asyncio.sleep(0.02)
        started = time.monotonic()
        await llm.aclose()
        try:
            await task
        except LLMInternalError as error:
            assert time.monotonic() - started < 1.0
            return error
        return None

    worker = threading.Thread(target=sync_call, daemon=True)
    worker.start()
    async_error = asyncio.run(async_call_then_close())
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert async_error is not None and "close()" in str(async_error)
    assert len(errors) == 1 and errors[0].partial_text == "thinking"
    assert_all_gone(pid_file)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_consumer_that_raises_frees_the_slot_without_the_cycle_collector(
    fake: Callable[..., tuple[LocalLLM, Path]], kind: str
) -> None:
    # With the cycle collector off, only reference counting can end an abandoned stream:
    # a stream held in a reference cycle would keep its slot, and the next call would wait.
    llm, pid_file = fake(fakes.SLOW_WORDS, FAKE_WORDS=5, FAKE_DELAY=0.01, timeout=20)

    def sync_rounds() -> str:
        for _ in range(3):
            with pytest.raises(KeyError):
                for _ in llm.stream(HELLO):
                    raise KeyError("the consumer failed")
        return llm.generate(HELLO).text

    async def async_rounds() -> str:
        # one loop for all: asyncio.run's closing would finalise an abandoned stream
        for _ in range(3):
            with pytest.raises(KeyError):
                async for _ in llm.astream(HELLO):
                    raise KeyError("the consumer failed")
        return (await asyncio.wait_for(llm.agenerate(HELLO), 15)).text

    gc.disable()
    try:
        text = sync_rounds() if kind == "sync" else asyncio.run(async_rounds())
        assert text  # the slot was free: the call after the failures did not wait
    finally:
        gc.enable()
    assert_all_gone(pid_file, within=5.0)
