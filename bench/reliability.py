"""Drive LocalLLM's fault cases many times (sync, async, concurrent) and print a table.

    python bench/reliability.py [--calls N]

Columns: fault, mode, calls, survived (the call ended as expected: a reply or the typed
error), processes leaked (a child or grandchild alive or a zombie afterwards), descriptors
leaked (open fds of this process, after against before), threads leaked (live threads of
this process, after against before), prompt exposures (times a secret prompt was seen in
any process's argv while llama.cpp ran). The goal: every call survived, zeros in every
leak column.

The warm rows (``warm.*``) run the real llama-server with the default model; what
"survived" means for each is in ``WARM_EXPECTATIONS`` and printed under the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import completion_binary, default_model
from helpers import fakes
from helpers.probes import ArgvScanner, descendants, process_alive

from jazzmine.local import (
    LLMInternalError,
    LLMTimeoutError,
    LocalLLM,
    MessagePart,
)

SECRET = "secret-prompt-3f9b2c"


@dataclass
class Row:
    fault: str
    mode: str
    calls: int = 0
    survived: int = 0
    processes_leaked: int = 0
    descriptors_leaked: int = 0
    threads_leaked: int = 0
    exposures: int = 0


def _zombie_children() -> int:
    me = str(os.getpid())
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if fields[1] == me and fields[0] == "Z":
                    count += 1
    return count


def _script(directory: Path, name: str, source: str) -> str:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=60, help="calls per fault and mode")
    parser.add_argument(
        "--warm-calls", type=int, default=8, help="rounds per warm fault and mode (real model)"
    )
    parser.add_argument("--only-warm", action="store_true", help="skip the per-call rows")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jazzmine-reliability-"))
    pid_file = work / "pids"
    env = {
        "FAKE_PID_FILE": str(pid_file),
        "FAKE_MEGABYTES": "2",
        "FAKE_WORDS": "5",
        "FAKE_DELAY": "0.01",
    }

    def fake(source: str, **options: object) -> LocalLLM:
        binary = _script(work, f"fake{time.monotonic_ns()}", source)
        return LocalLLM(binary_path=binary, model="fake", env=env, **options)  # type: ignore[arg-type]

    hello = [MessagePart("user", "hello")]
    real = LocalLLM(
        binary_path=completion_binary(),
        model=default_model(),
        max_tokens=4,
        max_concurrency=2,
    )
    secret = [MessagePart("user", f"Remember {SECRET}.")]
    # Start the thread that forks llama.cpp's children (it lives as long as the process),
    # so the first row does not count it as a leaked thread.
    real.generate(hello)

    def expect(kind: type[BaseException] | None) -> Callable[[BaseException | None], bool]:
        return lambda error: (error is None) if kind is None else isinstance(error, kind)

    # fault name -> (llm, messages, expected error, how the consumer behaves)
    cases: list[tuple[str, LocalLLM, list[MessagePart], type[BaseException] | None, str]] = [
        ("crash (SIGSEGV)", fake(fakes.CRASH), hello, LLMInternalError, "generate"),
        ("hang past timeout", fake(fakes.HANG, timeout=0.3), hello, LLMTimeoutError, "generate"),
        ("stderr flood 2 MiB", fake(fakes.STDERR_FLOOD), hello, None, "generate"),
        ("invalid UTF-8", fake(fakes.BAD_UTF8), hello, None, "generate"),
        ("cancelled mid-call", fake(fakes.HANG), hello, asyncio.CancelledError, "cancel"),
        ("stream abandoned", fake(fakes.SLOW_WORDS), hello, None, "abandon"),
        ("consumer raises", fake(fakes.SLOW_WORDS), hello, KeyError, "raise"),
        ("real llama.cpp, secret prompt", real, secret, None, "generate"),
    ]
    rows: list[Row] = []
    for fault, llm, messages, expected, behaviour in [] if args.only_warm else cases:
        for mode in ("sync", "async", "concurrent"):
            if behaviour == "cancel" and mode == "sync":
                continue
            calls = args.calls if llm is not real else max(6, args.calls // 10)
            row = Row(fault, mode, calls)
            pid_file.write_text("")
            fds_before = len(os.listdir("/proc/self/fd"))
            threads_before = threading.active_count()
            with ArgvScanner(SECRET) as scanner:
                outcomes = _drive(llm, messages, behaviour, mode, calls)
            row.survived = sum(expect(expected)(error) for error in outcomes)
            hung = sum(isinstance(error, Hung) for error in outcomes)
            if hung:
                HUNG[(fault, mode)] = hung
            time.sleep(0.3)  # SIGKILLed grandchildren exit asynchronously
            pids = [int(p) for p in pid_file.read_text().split()]
            row.processes_leaked = sum(process_alive(pid) for pid in pids) + _zombie_children()
            row.descriptors_leaked = max(0, len(os.listdir("/proc/self/fd")) - fds_before)
            row.threads_leaked = max(0, threading.active_count() - threads_before)
            row.exposures = scanner.seen if llm is real else 0
            rows.append(row)
            print(f"  {fault:32} {mode:10} {row.survived}/{row.calls}", file=sys.stderr)
    real.close()
    for fault, drive in WARM_ROWS.items():
        for mode in ("sync", "async", "concurrent"):
            row = _warm_row(fault, mode, drive, args.warm_calls)
            rows.append(row)
            print(f"  {fault:32} {mode:10} {row.survived}/{row.calls}", file=sys.stderr)
    _print_table(rows)


def _print_table(rows: list[Row]) -> None:
    columns = [
        "fault",
        "mode",
        "calls",
        "survived",
        "processes leaked",
        "descriptors leaked",
        "threads leaked",
        "prompt exposures",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.fault} | {row.mode} | {row.calls} | {row.survived} | {row.processes_leaked} "
            f"| {row.descriptors_leaked} | {row.threads_leaked} | {row.exposures} |"
        )
    total = sum(row.calls for row in rows)
    print(
        f"\n{total} calls; {sum(r.survived for r in rows)} survived; "
        f"{sum(r.processes_leaked for r in rows)} processes, "
        f"{sum(r.descriptors_leaked for r in rows)} descriptors and "
        f"{sum(r.threads_leaked for r in rows)} threads leaked; "
        f"{sum(r.exposures for r in rows)} prompt exposures"
    )
    for (fault, mode), hung in HUNG.items():
        print(
            f"\n**{fault}, {mode}: {hung} calls hung** (no outcome within {CALL_LIMIT:.0f} s; "
            "in sync and async rows, the calls after the first hang were not run)."
        )
    warm = [fault for fault in WARM_EXPECTATIONS if any(row.fault == fault for row in rows)]
    if warm:
        print("\nWarm rows (real llama-server, default model); a call survived when:\n")
        for fault in warm:
            print(f"- **{fault}**: {WARM_EXPECTATIONS[fault]}")


def _drive(
    llm: LocalLLM, messages: list[MessagePart], behaviour: str, mode: str, calls: int
) -> list[BaseException | None]:
    if mode == "sync":
        outcomes: list[BaseException | None] = []
        for _ in range(calls):
            outcomes.append(_bounded_sync_call(llm, messages, behaviour))
            if isinstance(outcomes[-1], Hung):
                outcomes += [Hung("not run after a hang")] * (calls - len(outcomes))
                break
        return outcomes

    async def bounded() -> BaseException | None:
        task = asyncio.ensure_future(_async_call(llm, messages, behaviour))
        done, _ = await asyncio.wait({task}, timeout=CALL_LIMIT)
        if task in done:
            return task.result()
        task.cancel()  # delivered, not awaited: a cancel that waits on the stuck call hangs
        return Hung(f"no outcome within {CALL_LIMIT:.0f} s")

    async def run_all() -> list[BaseException | None]:
        if mode == "concurrent":
            return list(await asyncio.gather(*(bounded() for _ in range(calls))))
        outcomes: list[BaseException | None] = []
        for _ in range(calls):
            outcomes.append(await bounded())
            if isinstance(outcomes[-1], Hung):
                # The next calls would wait for the same thing: counted, not run.
                outcomes += [Hung("not run after a hang")] * (calls - len(outcomes))
                break
        return outcomes

    loop = asyncio.new_event_loop()
    try:
        outcomes = loop.run_until_complete(run_all())
        if not any(isinstance(outcome, Hung) for outcome in outcomes):
            loop.run_until_complete(loop.shutdown_asyncgens())
        # else: the stuck calls' tasks are left pending (asyncio.run would wait on them)
    finally:
        loop.close()
    return outcomes


class Hung(Exception):
    """A call that gave no outcome within CALL_LIMIT: the bench goes on, the row says so."""


# Every fake call here ends in well under a second; a call still waiting after this long
# is stuck, and the bench reports it instead of waiting with it.
CALL_LIMIT = 30.0
HUNG: dict[tuple[str, str], int] = {}


def _bounded_sync_call(
    llm: LocalLLM, messages: list[MessagePart], behaviour: str
) -> BaseException | None:
    """A sync call on a thread of its own, so a stuck one is reported, not waited for
    (its thread is left behind, and counted as leaked)."""
    outcome: list[BaseException | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_sync_call(llm, messages, behaviour)), daemon=True
    )
    worker.start()
    worker.join(CALL_LIMIT)
    return outcome[0] if outcome else Hung(f"no outcome within {CALL_LIMIT:.0f} s")


def _sync_call(llm: LocalLLM, messages: list[MessagePart], behaviour: str) -> BaseException | None:
    try:
        if behaviour == "generate":
            llm.generate(messages)
        elif behaviour == "abandon":
            stream = llm.stream(messages)
            next(stream)
            stream.close()  # type: ignore[attr-defined]
        elif behaviour == "raise":
            for _ in llm.stream(messages):
                raise KeyError("consumer failed")
    except BaseException as error:
        return error
    return None


async def _async_call(
    llm: LocalLLM, messages: list[MessagePart], behaviour: str
) -> BaseException | None:
    try:
        if behaviour == "generate":
            await llm.agenerate(messages)
        elif behaviour == "cancel":
            task = asyncio.ensure_future(llm.agenerate(messages))
            await asyncio.sleep(0.1)
            task.cancel()
            await _settle(task)
        elif behaviour == "abandon":
            stream = llm.astream(messages)
            await stream.__anext__()
            await stream.aclose()  # type: ignore[attr-defined]
        elif behaviour == "raise":
            async for _ in llm.astream(messages):
                raise KeyError("consumer failed")
    except BaseException as error:
        return error
    return None


async def _settle(task: Awaitable[object]) -> None:
    await task


# ---------- warm mode: the real llama-server ----------

FORK = multiprocessing.get_context("fork")
# A prompt the model answers at length; with --ignore-eos a call runs until max_tokens
# (4000 tokens: far longer than any wait below), so a call is cut only by the fault.
LONG = [MessagePart("user", f"List the planets of the solar system. Keep {SECRET} to yourself.")]
SHORT = [MessagePart("user", f"Say hi. Keep {SECRET} to yourself.")]
SLOW_TIMEOUT = 1.5
# Long enough for a two-token call on a free slot even on a busy machine, far shorter
# than a 4000-token call that was left running in a slot the probe would wait for.
PROBE_TIMEOUT = 15.0
CHILD_CALLS = 3

WARM_EXPECTATIONS = {
    "warm: llama-server SIGKILLed mid-stream": (
        "each stream cut by the kill raised LLMInternalError whose partial_text starts with "
        "every piece the stream had yielded; the next call answered (2 tokens) on a new "
        "server (another pid). calls = killed streams + the call after each kill"
    ),
    "warm: timeout shorter than the generation": (
        f"each 4000-token call with timeout={SLOW_TIMEOUT} s raised LLMTimeoutError with "
        "partial text; then two concurrent 2-token calls (both slots) on the same server "
        f"(same pid) answered within {PROBE_TIMEOUT:.0f} s, which they could not if a slot "
        "still ran the cut call. calls = timed-out calls + the two probes after each"
    ),
    "warm: fork while the parent calls": (
        "the parent calls in a loop on another thread (sync: generate; async: agenerate; "
        "concurrent: two agenerate at once) while the main thread forks children that use "
        f"the same instance for {CHILD_CALLS} calls (generate, stream, agenerate): every "
        "call answered 4 tokens, the child's on a server of its own, the parent's on its "
        "first server; each child's server is gone once the child has exited"
    ),
}


@dataclass
class WarmTally:
    calls: int = 0
    survived: int = 0
    servers: set[int] = field(default_factory=set)  # every server pid seen


def _warm(**options: object) -> LocalLLM:
    options.setdefault("max_tokens", 4000)
    return LocalLLM(
        binary_path=completion_binary(),
        model=default_model(),
        keep_alive=-1,
        max_concurrency=2,
        extra_args=["--ignore-eos"],  # the same on every instance: they share one server
        **options,  # type: ignore[arg-type]
    )


def _server_pid(llm: LocalLLM) -> int:
    pid = llm.transport.server.pid  # type: ignore[attr-defined]
    assert pid is not None
    return int(pid)


def _reply_server(reply: object) -> object:
    return (getattr(reply, "api_metrics", None) or {}).get("server_pid")


def _warm_row(
    fault: str, mode: str, drive: Callable[[str, int, WarmTally], None], rounds: int
) -> Row:
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    children_before = descendants(os.getpid())
    tally = WarmTally()
    with ArgvScanner(SECRET) as scanner:
        drive(mode, rounds, tally)
    deadline = time.monotonic() + 5  # a killed server exits asynchronously
    while time.monotonic() < deadline and (
        any(process_alive(pid) for pid in tally.servers)
        or descendants(os.getpid()) - children_before
    ):
        time.sleep(0.05)
    leftover = (descendants(os.getpid()) - children_before) | {
        pid for pid in tally.servers if process_alive(pid)
    }
    return Row(
        fault,
        mode,
        tally.calls,
        tally.survived,
        processes_leaked=len(leftover) + _zombie_children(),
        descriptors_leaked=max(0, len(os.listdir("/proc/self/fd")) - fds_before),
        threads_leaked=max(0, threading.active_count() - threads_before),
        exposures=scanner.seen,
    )


def _kept(error: BaseException, pieces: list[str]) -> bool:
    return isinstance(error, LLMInternalError) and error.partial_text.startswith(
        "".join(pieces).strip()
    )


def _drive_kill(mode: str, rounds: int, tally: WarmTally) -> None:
    llm = _warm()
    try:
        llm.generate(LONG, max_tokens=2)  # loaded before the first kill
        for _ in range(rounds):
            pid = _server_pid(llm)
            tally.servers.add(pid)
            if mode == "sync":
                outcomes = [_kill_sync(llm, pid)]
            else:
                outcomes = asyncio.run(_kill_async(llm, pid, 1 if mode == "async" else 2))
            try:
                reply = llm.generate(LONG, max_tokens=2)
                recovered = reply.usage.completion_tokens == 2 and _reply_server(reply) != pid
            except Exception:
                recovered = False
            tally.calls += len(outcomes) + 1
            tally.survived += sum(outcomes) + recovered
        tally.servers.add(_server_pid(llm))
    finally:
        llm.close()


def _kill_sync(llm: LocalLLM, pid: int) -> bool:
    pieces: list[str] = []
    try:
        stream = llm.stream(LONG)
        pieces += [next(stream) for _ in range(3)]
        os.kill(pid, signal.SIGKILL)
        for piece in stream:
            pieces.append(piece)
    except Exception as error:
        return _kept(error, pieces)
    return False  # the stream ran to its end: the kill did not cut it


async def _kill_async(llm: LocalLLM, pid: int, streams: int) -> list[bool]:
    ready = [asyncio.Event() for _ in range(streams)]
    go = asyncio.Event()

    async def one(index: int) -> bool:
        pieces: list[str] = []
        try:
            async for piece in llm.astream(LONG):
                pieces.append(piece)
                if len(pieces) == 3:
                    ready[index].set()
                    await go.wait()
        except Exception as error:
            return _kept(error, pieces)
        finally:
            ready[index].set()
        return False

    tasks = [asyncio.ensure_future(one(index)) for index in range(streams)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 180)
    os.kill(pid, signal.SIGKILL)
    go.set()
    return list(await asyncio.gather(*tasks))


def _drive_timeout(mode: str, rounds: int, tally: WarmTally) -> None:
    slow = _warm(timeout=SLOW_TIMEOUT)
    probe = _warm(max_tokens=2, timeout=PROBE_TIMEOUT)  # timeout is per call: same server
    try:
        probe.generate(LONG)  # loaded before the first timed call
        pid = _server_pid(probe)
        tally.servers.add(pid)
        for _ in range(rounds):
            if mode == "sync":
                outcomes = [_timed_out(lambda: slow.generate(LONG))]
            else:
                outcomes = asyncio.run(_timed_out_async(slow, 1 if mode == "async" else 2))
            probes = asyncio.run(_probe_both_slots(probe, pid))
            tally.calls += len(outcomes) + len(probes)
            tally.survived += sum(outcomes) + sum(probes)
    finally:
        slow.close()
        probe.close()


def _timed_out(call: Callable[[], object]) -> bool:
    try:
        call()
    except LLMTimeoutError as error:
        return bool(error.partial_text)
    except Exception:
        return False
    return False


async def _timed_out_async(llm: LocalLLM, calls: int) -> list[bool]:
    async def one() -> bool:
        try:
            await llm.agenerate(LONG)
        except LLMTimeoutError as error:
            return bool(error.partial_text)
        except Exception:
            return False
        return False

    return list(await asyncio.gather(*(one() for _ in range(calls))))


async def _probe_both_slots(llm: LocalLLM, pid: int) -> list[bool]:
    async def one() -> bool:
        try:
            reply = await llm.agenerate(LONG)
        except Exception:
            return False
        return reply.usage.completion_tokens == 2 and _reply_server(reply) == pid

    return list(await asyncio.gather(one(), one()))


def _drive_fork(mode: str, rounds: int, tally: WarmTally) -> None:
    llm = _warm(max_tokens=4)
    stop = threading.Event()
    parent_outcomes: list[bool] = []
    try:
        llm.generate(SHORT)
        parent_server = _server_pid(llm)
        tally.servers.add(parent_server)

        def answered() -> Callable[[object], bool]:
            return lambda reply: (
                getattr(getattr(reply, "usage", None), "completion_tokens", 0) == 4
                and _reply_server(reply) == parent_server
            )

        async def acall() -> bool:
            try:
                return answered()(await llm.agenerate(SHORT))
            except Exception:
                return False

        def parent() -> None:
            if mode == "sync":
                while not stop.is_set():
                    try:
                        parent_outcomes.append(answered()(llm.generate(SHORT)))
                    except Exception:
                        parent_outcomes.append(False)
                return

            async def loop() -> None:
                while not stop.is_set():
                    width = 1 if mode == "async" else 2
                    parent_outcomes.extend(await asyncio.gather(*(acall() for _ in range(width))))

            asyncio.run(loop())

        caller = threading.Thread(target=parent, name="bench-parent-calls")
        caller.start()
        try:
            for _ in range(rounds):
                ok, child_server = _fork_once(llm, parent_server)
                tally.calls += CHILD_CALLS
                tally.survived += ok
                if child_server is not None:
                    tally.servers.add(child_server)
        finally:
            stop.set()
            caller.join()
        tally.calls += len(parent_outcomes)
        tally.survived += sum(parent_outcomes)
    finally:
        llm.close()


def _fork_once(llm: LocalLLM, parent_server: int) -> tuple[int, int | None]:
    """One forked child's calls on ``llm``: how many answered on a server of its own."""
    results: multiprocessing.Queue[tuple[int, int | None]] = FORK.Queue()
    child = FORK.Process(target=_child_calls, args=(llm, parent_server, results))
    child.start()
    try:
        ok, child_server = results.get(timeout=180)
    except Exception:  # a child that hangs counts as failed, and is killed
        child.kill()
        ok, child_server = 0, None
    child.join(30)
    if child.exitcode != 0:
        ok = 0
    results.close()
    results.join_thread()
    return ok, child_server


def _child_calls(
    llm: LocalLLM,
    parent_server: int,
    results: multiprocessing.Queue[tuple[int, int | None]],
) -> None:
    # The child does not close llm: its server must die with it all the same.
    ok, server = 0, None
    calls: list[Callable[[], object]] = [
        lambda: llm.generate(SHORT),
        lambda: _streamed(llm),
        lambda: asyncio.run(llm.agenerate(SHORT)),
    ]
    for call in calls:
        try:
            reply = call()
        except Exception:
            continue
        pid = _reply_server(reply)
        server = pid if isinstance(pid, int) else server
        tokens = getattr(getattr(reply, "usage", None), "completion_tokens", 0)
        ok += tokens == 4 and pid not in (None, parent_server)
    results.put((ok, server))


def _streamed(llm: LocalLLM) -> object:
    stream = llm.stream(SHORT)
    for _ in stream:
        pass
    return stream.response


WARM_ROWS: dict[str, Callable[[str, int, WarmTally], None]] = {
    "warm: llama-server SIGKILLed mid-stream": _drive_kill,
    "warm: timeout shorter than the generation": _drive_timeout,
    "warm: fork while the parent calls": _drive_fork,
}


if __name__ == "__main__":
    main()
