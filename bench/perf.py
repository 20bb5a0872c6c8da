"""What LocalLLM adds on top of llama.cpp itself, measured side by side in one run.

    bash bench/run.sh            (or: .venv-bench/bin/python bench/perf.py [--repeat N])

Every figure is paired: the two sides of a comparison run alternately, and the ratio of
each pair is summarised (median, min, max), because these machines are shared and noisy.
Writes bench/results/perf.md, perf.json and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jazzmine.core.llm import LocalLLM, MessagePart
from jazzmine.core.llm.local import binary as binaries
from jazzmine.core.llm.local import defaults, percall
from jazzmine.core.llm.local.request import GenerationRequest

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = [MessagePart("user", "List the planets of the solar system.")]
# The same generation on both sides: the model may not end early, so replies are equal.
FIXED_LENGTH = ["--ignore-eos"]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "llama_cpp_python_sdist": defaults.LLAMA_CPP_PYTHON_VERSION,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


class Setup:
    def __init__(self) -> None:
        self.binary = str(defaults.build_bin_dir() / "llama-completion")
        self.model = str(defaults.ensure_default_model())

    def llm(self, max_tokens: int, **options: Any) -> LocalLLM:
        return LocalLLM(
            binary_path=self.binary,
            model=self.model,
            max_tokens=max_tokens,
            seed=1,
            extra_args=FIXED_LENGTH,
            stop=None,
            **options,
        )

    def direct_argv(self, llm: LocalLLM) -> tuple[percall.LaunchPlan, list[str]]:
        """The exact argv LocalLLM would run, for running the binary directly."""
        call = llm._new_call(PROMPT, None, {})
        plan = llm._prepare(call)
        return plan, plan.argv


def run_direct(setup: Setup, llm: LocalLLM) -> tuple[float, float]:
    """(wall seconds, seconds to the first stdout byte) of the bare binary."""
    plan, argv = setup.direct_argv(llm)
    started = time.perf_counter()
    child = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=plan.pass_fds,
    )
    plan.release()
    assert child.stdout is not None and child.stderr is not None
    drain = threading.Thread(target=child.stderr.read)
    drain.start()
    first = os.read(child.stdout.fileno(), 65536)
    first_at = time.perf_counter() - started
    while first and os.read(child.stdout.fileno(), 65536):
        pass
    child.wait()
    drain.join()
    return time.perf_counter() - started, first_at


def run_naive(setup: Setup, max_tokens: int) -> float:
    """The spec read literally: the prompt in argv, the weights flag, nothing else
    (plus -n, so the reply has the same length)."""
    prompt = "User: List the planets of the solar system.\nAssistant: "
    started = time.perf_counter()
    subprocess.run(
        [setup.binary, "-m", setup.model, "-p", prompt, "-n", str(max_tokens), *FIXED_LENGTH],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def bench_overhead(setup: Setup, repeat: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for tokens in (1, 32, 256):
        llm = setup.llm(tokens)
        sync_ratio, async_ratio, naive_ratio, direct_times = [], [], [], []
        for _ in range(repeat):
            direct, _ = run_direct(setup, llm)
            started = time.perf_counter()
            llm.generate(PROMPT)
            ours = time.perf_counter() - started
            started = time.perf_counter()
            asyncio.run(llm.agenerate(PROMPT))
            ours_async = time.perf_counter() - started
            naive = run_naive(setup, tokens)
            direct_times.append(direct)
            sync_ratio.append(ours / direct)
            async_ratio.append(ours_async / direct)
            naive_ratio.append(naive / direct)
        rows[str(tokens)] = {
            "direct_seconds": summary(direct_times),
            "sync_ratio": summary(sync_ratio),
            "async_ratio": summary(async_ratio),
            "naive_ratio": summary(naive_ratio),
        }
    return rows


def bench_streaming(setup: Setup, repeat: int) -> dict[str, Any]:
    llm = setup.llm(256)
    added_ms, pieces_per_token = [], []
    for _ in range(repeat):
        _, direct_first = run_direct(setup, llm)
        started = time.perf_counter()
        stream = llm.stream(PROMPT)
        next(stream)
        ours_first = time.perf_counter() - started
        pieces = 1 + sum(1 for _ in stream)
        added_ms.append((ours_first - direct_first) * 1000)
        pieces_per_token.append(pieces / 256)
    return {
        "first_piece_added_ms": summary(added_ms),
        "pieces_per_token": summary(pieces_per_token),
    }


def tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, parent = int(entry), int(fields["PPid"])
        children.setdefault(parent, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


class PeakMemory:
    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(os.getpid()))
            time.sleep(0.01)


def bench_concurrency(setup: Setup) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for limit in (1, 2, 4):
        llm = setup.llm(32, max_concurrency=limit)

        async def burst(model: LocalLLM = llm) -> None:
            await asyncio.gather(*(model.agenerate(PROMPT) for _ in range(8)))

        with PeakMemory() as memory:
            started = time.perf_counter()
            asyncio.run(burst())
            elapsed = time.perf_counter() - started
        rows[f"max_concurrency={limit}"] = {
            "seconds": elapsed,
            "calls_per_second": 8 / elapsed,
            "peak_rss_mib": memory.peak_kib / 1024,
        }
    serial = setup.llm(32)
    with PeakMemory() as memory:
        started = time.perf_counter()
        for _ in range(8):
            serial.generate(PROMPT)
        elapsed = time.perf_counter() - started
    rows["series (sync)"] = {
        "seconds": elapsed,
        "calls_per_second": 8 / elapsed,
        "peak_rss_mib": memory.peak_kib / 1024,
    }
    return rows


def import_seconds(module: str) -> float | None:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout) if done.returncode == 0 else None


def bench_imports(repeat: int) -> dict[str, Any]:
    modules = ["jazzmine.core.llm", "litellm", "langchain_community.llms.llamacpp", "ollama"]
    rows: dict[str, Any] = {}
    for module in modules:
        times = [import_seconds(module) for _ in range(repeat)]
        ok = [t * 1000 for t in times if t is not None]
        rows[module] = summary(ok) if ok else None
    return rows


def load_cost(setup: Setup, context: int | None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a one-token run at a context size (None: default)."""
    argv = [
        setup.binary,
        "-m",
        setup.model,
        "-p",
        "Hello",
        "-n",
        "1",
        "--no-warmup",
        "-no-cnv",
        "--simple-io",
    ]
    if context is not None:
        argv += ["-c", str(context)]
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], capture_output=True, check=True); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) / 1024


def bench_context(setup: Setup, repeat: int) -> dict[str, Any]:
    sized = setup.llm(1)._context_size(
        GenerationRequest(
            prompt="Hello", max_tokens=1, temperature=0, seed=None, stop_sequences=()
        ),
        binaries.probe(setup.binary),
    )
    rows: dict[str, Any] = {}
    for label, context in (
        ("binary default (model's 32768)", None),
        (f"LocalLLM default ({sized})", sized),
    ):
        costs = [load_cost(setup, context) for _ in range(repeat)]
        rows[label] = {
            "seconds": summary([c[0] for c in costs]),
            "peak_rss_mib": summary([c[1] for c in costs]),
        }
    return rows


def plot(results: dict[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    overhead = results["overhead"]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = list(overhead)
    width = 0.25
    for offset, key in enumerate(("sync_ratio", "async_ratio", "naive_ratio")):
        ax.bar(
            [i + (offset - 1) * width for i in range(len(labels))],
            [overhead[t][key]["median"] for t in labels],
            width,
            label=key.replace("_", " "),
        )
    ax.axhline(1.03, color="red", linestyle="--", linewidth=1, label="goal 1.03")
    ax.set_xticks(range(len(labels)), [f"{t} tokens" for t in labels])
    ax.set_ylabel("wall time / bare binary")
    ax.set_ylim(0.9, max(1.2, max(overhead[t]["naive_ratio"]["median"] for t in labels) * 1.05))
    ax.legend()
    ax.set_title("LocalLLM.generate over the bare binary (median of pairs)")
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_overhead.png", dpi=100)
    written.append("perf_overhead.png")
    imports = {k: v for k, v in results["imports"].items() if v}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(imports), [v["median"] for v in imports.values()])
    ax.axvline(30, color="red", linestyle="--", linewidth=1, label="goal 30 ms")
    ax.set_xscale("log")
    ax.set_xlabel("import time, ms (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_imports.png", dpi=100)
    written.append("perf_imports.png")
    return written


def report(results: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# LocalLLM per-call performance ({results['machine']['date']})",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()),
        "",
        "## 1 & 5. Wall time over the bare binary (same argv run directly), median (min–max)",
        "",
        "| reply tokens | bare binary s | generate / bare | agenerate / bare | naive spec / bare |",
        "|---:|---:|---:|---:|---:|",
    ]
    for tokens, row in results["overhead"].items():
        lines.append(
            f"| {tokens} | {fmt(row['direct_seconds'])} | {fmt(row['sync_ratio'])} | "
            f"{fmt(row['async_ratio'])} | {fmt(row['naive_ratio'])} |"
        )
    stream = results["streaming"]
    lines += [
        "",
        "## 2. Streaming (256-token replies)",
        "",
        "| figure | median (min–max) |",
        "|---|---|",
        f"| first piece after the binary's first stdout byte, ms | {fmt(stream['first_piece_added_ms'], 1)} |",
        f"| pieces per generated token | {fmt(stream['pieces_per_token'], 2)} |",
        "",
        "## 3. Eight concurrent agenerate calls, 32-token replies",
        "",
        "| run | seconds | calls/s | peak RSS of the process tree, MiB |",
        "|---|---:|---:|---:|",
    ]
    for label, row in results["concurrency"].items():
        lines.append(
            f"| {label} | {row['seconds']:.2f} | {row['calls_per_second']:.2f} | {row['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        "## 4. Import time, ms (fresh interpreter each), median (min–max)",
        "",
        "| module | ms |",
        "|---|---:|",
    ]
    for module, stats in results["imports"].items():
        lines.append(f"| `{module}` | {fmt(stats, 1) if stats else 'not installed'} |")
    lines += [
        "",
        "## 6. Context size: a one-token run",
        "",
        "| context | wall s | peak RSS MiB |",
        "|---|---:|---:|",
    ]
    for label, row in results["context"].items():
        lines.append(f"| {label} | {fmt(row['seconds'])} | {fmt(row['peak_rss_mib'], 0)} |")
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    setup = Setup()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("overhead", lambda: bench_overhead(setup, args.repeat)),
        ("streaming", lambda: bench_streaming(setup, args.repeat)),
        ("concurrency", lambda: bench_concurrency(setup)),
        ("imports", lambda: bench_imports(args.repeat)),
        ("context", lambda: bench_context(setup, args.repeat)),
    ]
    results: dict[str, Any] = {"machine": machine()}
    for name, step in steps:
        print(f"bench: {name}", file=sys.stderr, flush=True)
        results[name] = step()
    (RESULTS / "perf.json").write_text(json.dumps(results, indent=2))
    text = report(results, plot(results))
    (RESULTS / "perf.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
