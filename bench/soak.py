"""A long run: thousands of calls on one Python process, then what it holds afterwards.

    python bench/soak.py [--calls N] [--max-tokens N]
    python bench/soak.py --per-call N [--progress FILE] [--binary LLAMA_COMPLETION]


Calls mix both modes (a llama-completion per call, and warm: one kept llama-server) and
the four methods (generate, stream, agenerate, astream); the warm instance also takes
bursts of concurrent agenerate/astream calls through max_concurrency=2. Every call is
checked (no error, the token count asked for, the same text as the first reply to that
prompt: greedy decoding makes it deterministic). The Python process (RSS, open
descriptors, threads, child processes) and the server (RSS, descriptors, threads) are
recorded at the start (after one warm-up round, so imports, the loaded model and the
thread that starts llama.cpp's children are in the baseline) and every ``--sample-every``
calls to the end. Results: bench/results/soak.md and soak.json.

``--per-call N`` runs N per-call calls and nothing else (the four methods in turn), and
counts the replies cut short: an ``LLMIncompleteOutputError`` (llama-completion exited 0
without its closing statistics), or a reply without the token count asked for or with
another text (the statistics, or words, missing). Its tally goes to ``--progress`` as it
runs. Results: bench/results/soak-per-call.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import completion_binary, default_model, machine, machine_line, save
from helpers.probes import descendants, process_alive

from jazzmine.local import LLMResponse, LocalLLM, MessagePart

PROMPTS = [
    [MessagePart("user", "Say hi.")],
    [MessagePart("user", "What is the capital of France?")],
    [MessagePart("user", "Name a colour.")],
    [
        MessagePart("system", "You answer in one short sentence."),
        MessagePart("user", "What is two plus two?"),
    ],
    [
        MessagePart("user", "Say hello."),
        MessagePart("assistant", "Hello! How can I help you today?"),
        MessagePart("user", "Tell me a fact about the Moon."),
    ],
]
METHODS = ("generate", "stream", "agenerate", "astream")
# Per round: the four methods once per call (a process and a model load each: the slow
# ones), WARM_REPEAT times warm, then a burst of concurrent calls on the warm instance
# (two run at once, the rest queue): 40 calls, a tenth per call.
WARM_REPEAT = 3
BURST = 24


@dataclass
class Tally:
    """Outcomes of one kind of call (mode and method)."""

    calls: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)
        return {
            "calls": self.calls,
            "failures": dict(self.failures),
            "median_s": statistics.median(ordered) if ordered else None,
            "p99_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None,
            "max_s": ordered[-1] if ordered else None,
        }


class Soak:
    def __init__(self, max_tokens: int, warm: bool = True, binary: str | None = None) -> None:
        self.max_tokens = max_tokens
        options: dict[str, Any] = {
            "binary_path": binary or completion_binary(),
            "model": default_model(),
            "max_tokens": max_tokens,
            # Each reply runs to max_tokens, so its token count is known in advance.
            "extra_args": ["--ignore-eos"],
        }
        self.llms = {"per-call": LocalLLM(**options)}
        if warm:
            self.llms["warm"] = LocalLLM(keep_alive=-1, max_concurrency=2, **options)
        self.tallies: dict[tuple[str, str], Tally] = {}
        # The first reply to each prompt; every later reply, in either mode, must match.
        self.reference: dict[int, str] = {}
        self.first_errors: dict[str, str] = {}
        self.calls = 0
        self.server_pids: set[int] = set()

    # ---------- one call ----------
    def _check(self, reply: LLMResponse, prompt: int) -> str | None:
        """What is wrong with a reply, as a failure name, or None."""
        failure = None
        expected = self.reference.setdefault(prompt, reply.text)
        if reply.usage.completion_tokens != self.max_tokens:
            failure = "wrong token count"
        elif reply.text != expected:
            failure = "text differs from the first reply"
        if failure is not None:
            # Kept for the report: what the reply said about itself.
            self.first_errors.setdefault(
                failure,
                repr(
                    {
                        "prompt": prompt,
                        "text": reply.text,
                        "expected": expected,
                        "usage": reply.usage,
                        "finish_reason": reply.finish_reason,
                        "api_metrics": reply.api_metrics,
                    }
                )[:2000],
            )
        return failure

    def _record(self, mode: str, method: str, started: float, failure: str | None) -> None:
        tally = self.tallies.setdefault((mode, method), Tally())
        tally.calls += 1
        tally.seconds.append(time.perf_counter() - started)
        if failure is not None:
            tally.failures[failure] += 1
        self.calls += 1

    def _failed(self, error: BaseException) -> str:
        name = type(error).__name__
        self.first_errors.setdefault(name, repr(error)[:500])
        return name

    def sync_call(self, mode: str, method: str, prompt: int) -> None:
        llm = self.llms[mode]
        started = time.perf_counter()
        try:
            if method == "generate":
                reply = llm.generate(PROMPTS[prompt])
            else:
                stream = llm.stream(PROMPTS[prompt])
                text = "".join(stream)
                reply = stream.response
                if text != reply.text:
                    raise AssertionError("streamed pieces differ from the response text")
            failure = self._check(reply, prompt)
            self._note_server(reply)
        except Exception as error:
            failure = self._failed(error)
        self._record(mode, method, started, failure)

    async def async_call(self, mode: str, method: str, prompt: int) -> None:
        llm = self.llms[mode]
        started = time.perf_counter()
        try:
            if method == "agenerate":
                reply = await llm.agenerate(PROMPTS[prompt])
            else:
                stream = llm.astream(PROMPTS[prompt])
                text = "".join([piece async for piece in stream])
                reply = stream.response
                if text != reply.text:
                    raise AssertionError("streamed pieces differ from the response text")
            failure = self._check(reply, prompt)
            self._note_server(reply)
        except Exception as error:
            failure = self._failed(error)
        self._record(mode, method, started, failure)

    def _note_server(self, reply: LLMResponse) -> None:
        pid = (reply.api_metrics or {}).get("server_pid")
        if isinstance(pid, int):
            self.server_pids.add(pid)

    # ---------- one round ----------
    def round(self, prompts: itertools.cycle[int]) -> None:
        """Per call: the four methods once; warm: the four methods WARM_REPEAT times, then
        a burst."""
        for mode, method in [("per-call", m) for m in METHODS] + [
            ("warm", m) for m in METHODS * WARM_REPEAT
        ]:
            if method.startswith("a"):
                asyncio.run(self.async_call(mode, method, next(prompts)))
            else:
                self.sync_call(mode, method, next(prompts))
        burst = [
            (method, next(prompts))
            for method in itertools.islice(itertools.cycle(("agenerate", "astream")), BURST)
        ]

        async def run_burst() -> None:
            await asyncio.gather(*(self.async_call("warm", m, p) for m, p in burst))

        asyncio.run(run_burst())

    @property
    def server_pid(self) -> int | None:
        if "warm" not in self.llms:
            return None
        server = getattr(self.llms["warm"].transport, "server", None)
        pid = getattr(server, "pid", None)
        return pid if isinstance(pid, int) else None


CALLS_PER_ROUND = len(METHODS) * (1 + WARM_REPEAT) + BURST


# ---------- what the processes hold ----------
def _status(pid: int | str) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(
        (key, value.strip()) for key, value in (line.split(":", 1) for line in text.splitlines())
    )


def _kib(status: dict[str, str], key: str) -> int:
    return int(status.get(key, "0 kB").split()[0])


def snapshot(soak: Soak, began: float) -> dict[str, Any]:
    # A call's helper threads end just after its reply: let them, so a sample counts
    # what the process keeps, not what is finishing.
    time.sleep(0.3)
    me = _status("self")
    children = descendants(os.getpid())
    facts: dict[str, Any] = {
        "calls": soak.calls,
        "seconds": round(time.monotonic() - began, 1),
        "python_rss_kib": _kib(me, "VmRSS"),
        "python_fds": len(os.listdir("/proc/self/fd")),
        "python_threads": int(me["Threads"]),
        "python_threads_alive": threading.active_count(),
        "child_processes": len(children),
        "children": sorted(children),
    }
    pid = soak.server_pid
    if pid is not None and process_alive(pid):
        server = _status(pid)
        facts.update(
            server_pid=pid,
            server_rss_kib=_kib(server, "VmRSS"),
            server_fds=len(os.listdir(f"/proc/{pid}/fd")),
            server_threads=int(server["Threads"]),
        )
    return facts


RESOURCES = [
    ("Python: RSS, MiB", "python_rss_kib", 1 / 1024),
    ("Python: open descriptors", "python_fds", 1),
    ("Python: threads (OS)", "python_threads", 1),
    ("Python: child processes", "child_processes", 1),
    ("llama-server: RSS, MiB", "server_rss_kib", 1 / 1024),
    ("llama-server: open descriptors", "server_fds", 1),
    ("llama-server: threads", "server_threads", 1),
]


def _value(facts: dict[str, Any], key: str, scale: float) -> str:
    if key not in facts:
        return "–"
    value = facts[key] * scale
    return f"{value:.1f}" if scale != 1 else str(value)


def markdown(results: dict[str, Any]) -> str:
    start, end, after = results["start"], results["end"], results["after_close"]
    lines = [
        f"# Soak: {results['calls']} calls in {results['seconds']:.0f} s",
        "",
        f"{machine_line(results['machine'])}",
        "",
        f"Model: {Path(results['model']).name}, max_tokens={results['max_tokens']} "
        "(--ignore-eos: each reply is exactly that long), greedy. One process; rounds of "
        f"{CALLS_PER_ROUND} calls: per call generate, stream, agenerate, astream; warm "
        f"(keep_alive=-1, max_concurrency=2) the same four {WARM_REPEAT} times, then a burst of "
        f"{BURST} concurrent agenerate/astream. A call fails on an error, a wrong token "
        "count, or a text different from the first reply to its prompt.",
        "",
        "| mode | method | calls | failures | median s | p99 s | max s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, tally in results["by_kind"].items():
        failures = ", ".join(f"{name}: {count}" for name, count in tally["failures"].items())
        mode, method = label.split(" ", 1)
        lines.append(
            f"| {mode} | {method} | {tally['calls']} | {failures or 0} | "
            f"{tally['median_s']:.3f} | {tally['p99_s']:.3f} | {tally['max_s']:.3f} |"
        )
    failures = results["failures"]
    lines += [
        "",
        "Failures by type: "
        + (", ".join(f"{name} {count}" for name, count in failures.items()) or "none")
        + f". llama-server processes used by the warm instance: {results['servers_used']}.",
        "",
    ]
    for name, first in results["first_errors"].items():
        lines += [f"- first {name}: `{first[:400]}`"]
    lines += [
        "",
        f"| resource | start (after {start['calls']} calls) | end (after {end['calls']} calls) "
        "| change | after close() |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key, scale in RESOURCES:
        change = "–"
        if key in start and key in end:
            delta = (end[key] - start[key]) * scale
            change = f"{delta:+.1f}" if scale != 1 else f"{delta:+d}"
        lines.append(
            f"| {label} | {_value(start, key, scale)} | {_value(end, key, scale)} | {change} "
            f"| {_value(after, key, scale)} |"
        )
    lines += [
        "",
        "Samples (every "
        f"{results['sample_every']} calls): Python RSS MiB / fds / threads; server RSS MiB / fds",
        "",
        "| calls | seconds | Python RSS | Python fds | Python threads | server RSS | server fds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sample in results["samples"]:
        lines.append(
            f"| {sample['calls']} | {sample['seconds']:.0f} "
            f"| {_value(sample, 'python_rss_kib', 1 / 1024)} "
            f"| {sample['python_fds']} | {sample['python_threads']} "
            f"| {_value(sample, 'server_rss_kib', 1 / 1024)} | {_value(sample, 'server_fds', 1)} |"
        )
    return "\n".join(lines) + "\n"


# What a reply cut short shows as: the typed error, or (from a binary whose statistics
# were lost without it) a token count that is not the one asked for, or other words.
SHORT_REPLY = ("LLMIncompleteOutputError", "wrong token count", "text differs from the first reply")


def per_call_only(
    calls: int, max_tokens: int, progress: Path | None, name: str, binary: str | None
) -> None:
    """``--per-call N``: N per-call calls, the four methods in turn, and the short replies."""
    soak = Soak(max_tokens, warm=False, binary=binary)
    prompts = itertools.cycle(range(len(PROMPTS)))
    methods = itertools.cycle(METHODS)
    began = time.monotonic()

    def tally() -> dict[str, Any]:
        failures: Counter[str] = Counter()
        for one in soak.tallies.values():
            failures.update(one.failures)
        return {
            "calls": soak.calls,
            "seconds": round(time.monotonic() - began, 1),
            "short_replies": sum(failures[kind] for kind in SHORT_REPLY),
            "failures": dict(failures),
        }

    while soak.calls < calls:
        method = next(methods)
        if method.startswith("a"):
            asyncio.run(soak.async_call("per-call", method, next(prompts)))
        else:
            soak.sync_call("per-call", method, next(prompts))
        if progress is not None and (soak.calls % 20 == 0 or soak.calls == calls):
            with progress.open("a") as out:
                out.write(json.dumps(tally()) + "\n")
    soak.llms["per-call"].close()
    results: dict[str, Any] = {
        "machine": machine(),
        "model": default_model(),
        "binary": soak.llms["per-call"].binary_path,
        "max_tokens": max_tokens,
        **tally(),
        "by_kind": {
            f"{mode} {method}": kind.summary() for (mode, method), kind in soak.tallies.items()
        },
        "first_errors": soak.first_errors,
    }
    lines = [
        f"# Soak, per call only: {results['calls']} calls in {results['seconds']:.0f} s",
        "",
        machine_line(results["machine"]),
        "",
        f"Binary: {results['binary']}. Model: {Path(results['model']).name}, "
        f"max_tokens={max_tokens} (--ignore-eos), greedy;"
        " generate, stream, agenerate, astream in turn. Short replies (an "
        "LLMIncompleteOutputError, a wrong token count, another text): "
        f"**{results['short_replies']}**. All failures: {results['failures'] or 'none'}.",
        "",
        "| method | calls | failures | median s | p99 s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, kind in results["by_kind"].items():
        lines.append(
            f"| {label.split(' ', 1)[1]} | {kind['calls']} | {sum(kind['failures'].values())} "
            f"| {kind['median_s']:.3f} | {kind['p99_s']:.3f} | {kind['max_s']:.3f} |"
        )
    lines += [f"- first {kind}: `{first[:400]}`" for kind, first in soak.first_errors.items()]
    save(name, results, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000, help="calls after the warm-up")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--name", default=None, help="results file name under bench/results")
    parser.add_argument("--per-call", type=int, help="only this many per-call calls")
    parser.add_argument("--progress", type=Path, help="--per-call's running tally (JSON lines)")
    parser.add_argument("--binary", help="--per-call's llama-completion (default: the build's)")
    args = parser.parse_args()
    if args.per_call is not None:
        name = args.name or "soak-per-call"
        per_call_only(args.per_call, args.max_tokens, args.progress, name, args.binary)
        return
    args.name = args.name or "soak"
    soak = Soak(args.max_tokens)
    prompts = itertools.cycle(range(len(PROMPTS)))
    soak.round(prompts)  # warm-up: counted in no table
    warmup_failures = sum(sum(t.failures.values()) for t in soak.tallies.values())
    soak.tallies.clear()
    soak.calls = 0
    began = time.monotonic()
    start = snapshot(soak, began)
    samples = [start]
    next_sample = args.sample_every
    while soak.calls < args.calls:
        soak.round(prompts)
        if soak.calls >= next_sample:
            samples.append(snapshot(soak, began))
            next_sample += args.sample_every
            failed = sum(sum(t.failures.values()) for t in soak.tallies.values())
            # The figures so far, in case a long run is stopped before its table.
            print(
                f"bench: {soak.calls} calls, {time.monotonic() - began:.0f} s, {failed} failed, "
                f"{json.dumps(samples[-1])}",
                file=sys.stderr,
                flush=True,
            )
    seconds = time.monotonic() - began
    end = snapshot(soak, began)
    if samples[-1]["calls"] != end["calls"]:
        samples.append(end)
    for llm in soak.llms.values():
        llm.close()
    after = snapshot(soak, began)
    after["server_alive"] = end.get("server_pid") is not None and process_alive(end["server_pid"])
    failures: Counter[str] = Counter()
    for tally in soak.tallies.values():
        failures.update(tally.failures)
    results: dict[str, Any] = {
        "machine": machine(),
        "model": default_model(),
        "max_tokens": args.max_tokens,
        "calls": soak.calls,
        "seconds": seconds,
        "warmup_calls": CALLS_PER_ROUND,
        "warmup_failures": warmup_failures,
        "by_kind": {
            f"{mode} {method}": tally.summary()
            for (mode, method), tally in sorted(soak.tallies.items())
        },
        "failures": dict(failures),
        "first_errors": soak.first_errors,
        "servers_used": len(soak.server_pids),
        "sample_every": args.sample_every,
        "start": start,
        "end": end,
        "after_close": after,
        "samples": samples,
    }
    save(args.name, results, markdown(results))


if __name__ == "__main__":
    main()
