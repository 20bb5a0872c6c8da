"""Drive LocalLLM's fault cases many times (sync, async, concurrent) and print a table.

    python bench/reliability.py [--calls N]

Columns: fault, mode, calls, survived (the call ended as expected: a reply or the typed
error), processes leaked (a child or grandchild alive or a zombie afterwards), descriptors
leaked (open fds of this process, after against before), prompt exposures (times a
secret prompt was seen in any process's argv while llama.cpp ran). The goal: every call
survived, zeros in every leak column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fakes
from common import completion_binary, default_model
from probes import ArgvScanner, process_alive

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
    for fault, llm, messages, expected, behaviour in cases:
        for mode in ("sync", "async", "concurrent"):
            if behaviour == "cancel" and mode == "sync":
                continue
            calls = args.calls if llm is not real else max(6, args.calls // 10)
            row = Row(fault, mode, calls)
            pid_file.write_text("")
            fds_before = len(os.listdir("/proc/self/fd"))
            with ArgvScanner(SECRET) as scanner:
                outcomes = _drive(llm, messages, behaviour, mode, calls)
            row.survived = sum(expect(expected)(error) for error in outcomes)
            time.sleep(0.3)  # SIGKILLed grandchildren exit asynchronously
            pids = [int(p) for p in pid_file.read_text().split()]
            row.processes_leaked = sum(process_alive(pid) for pid in pids) + _zombie_children()
            row.descriptors_leaked = max(0, len(os.listdir("/proc/self/fd")) - fds_before)
            row.exposures = scanner.seen if llm is real else 0
            rows.append(row)
            print(f"  {fault:32} {mode:10} {row.survived}/{row.calls}", file=sys.stderr)
    columns = [
        "fault",
        "mode",
        "calls",
        "survived",
        "processes leaked",
        "descriptors leaked",
        "prompt exposures",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.fault} | {row.mode} | {row.calls} | {row.survived} | {row.processes_leaked} "
            f"| {row.descriptors_leaked} | {row.exposures} |"
        )
    total = sum(row.calls for row in rows)
    print(
        f"\n{total} calls; {sum(r.survived for r in rows)} survived; "
        f"{sum(r.processes_leaked for r in rows)} processes and "
        f"{sum(r.descriptors_leaked for r in rows)} descriptors leaked; "
        f"{sum(r.exposures for r in rows)} prompt exposures"
    )


def _drive(
    llm: LocalLLM, messages: list[MessagePart], behaviour: str, mode: str, calls: int
) -> list[BaseException | None]:
    if mode == "sync":
        return [_sync_call(llm, messages, behaviour) for _ in range(calls)]

    async def run_all() -> list[BaseException | None]:
        if mode == "async":
            return [await _async_call(llm, messages, behaviour) for _ in range(calls)]
        return list(
            await asyncio.gather(*(_async_call(llm, messages, behaviour) for _ in range(calls)))
        )

    return asyncio.run(run_all())


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


if __name__ == "__main__":
    main()
