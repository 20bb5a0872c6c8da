"""Per-call mode: what LocalLLM adds on top of llama.cpp itself, side by side in one run.

    bash bench/run.sh                      (all benchmarks)
    .venv-bench/bin/python bench/perf.py [--repeat N]

Every comparison is paired: the sides run alternately and the ratio of each pair is
summarised (median, min, max), because these machines are shared and noisy. Writes
bench/results/perf.md, perf.json and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

from common import (
    PeakMemory,
    completion_binary,
    concurrency_table,
    default_model,
    fmt,
    machine,
    machine_line,
    pyplot,
    run_steps,
    save,
    summary,
    timed,
)

from jazzmine.local import LocalLLM, MessagePart
from jazzmine.local.transports.percall import PerCallTransport

PROMPT = [MessagePart("user", "List the planets of the solar system.")]
NAIVE_PROMPT = "User: List the planets of the solar system.\nAssistant: "
# Both sides must generate the same number of tokens: the model may not end early.
FIXED_LENGTH = ("--ignore-eos",)


class Bench:
    def __init__(self) -> None:
        self.binary = completion_binary()
        self.model = default_model()

    def llm(self, max_tokens: int, **options: Any) -> LocalLLM:
        return LocalLLM(
            binary_path=self.binary,
            model=self.model,
            max_tokens=max_tokens,
            seed=1,
            extra_args=FIXED_LENGTH,
            **options,
        )

    def run_direct(self, llm: LocalLLM) -> tuple[float, float]:
        """(wall s, s to the first stdout byte) of the binary run directly with the very
        argv LocalLLM would use (the physical limit for a process per call)."""
        transport = llm.transport
        assert isinstance(transport, PerCallTransport)
        plan, _ = transport.launch(llm.build_request(PROMPT))
        started = time.perf_counter()
        child = subprocess.Popen(
            plan.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=plan.pass_fds,
            env=plan.env,
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

    def run_naive(self, max_tokens: int) -> float:
        """The spec read literally: subprocess.run([binary, "-p", prompt]) plus the weights
        flag so it can run at all (and -n, so the reply has the same length)."""
        argv = [self.binary, "-m", self.model, "-p", NAIVE_PROMPT, "-n", str(max_tokens)]
        started = time.perf_counter()
        subprocess.run([*argv, *FIXED_LENGTH], capture_output=True, check=True)
        return time.perf_counter() - started


def bench_overhead(bench: Bench, repeat: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for tokens in (1, 32, 256):
        llm = bench.llm(tokens)
        direct_s, sync_r, async_r, naive_r = [], [], [], []
        for _ in range(repeat):
            direct, _ = bench.run_direct(llm)
            ours = timed(lambda llm=llm: llm.generate(PROMPT))
            ours_async = timed(lambda llm=llm: asyncio.run(llm.agenerate(PROMPT)))
            naive = bench.run_naive(tokens)
            direct_s.append(direct)
            sync_r.append(ours / direct)
            async_r.append(ours_async / direct)
            naive_r.append(naive / direct)
        rows[str(tokens)] = {
            "direct_seconds": summary(direct_s),
            "sync_ratio": summary(sync_r),
            "async_ratio": summary(async_r),
            "naive_ratio": summary(naive_r),
        }
    return rows


# A stand-in model that writes the system-wide monotonic time as each "token": the
# consumer's clock minus that stamp is exactly what LocalLLM adds between a token leaving
# the binary and reaching the caller (pipe, selector, decoding, stops, generator).
STAMPING_BINARY = """#!{python}
import sys, time
if "--help" in sys.argv:
    print("usage: stamper -p PROMPT"); sys.exit(0)
for _ in range(64):
    sys.stdout.write(f"{{time.monotonic():.6f}} "); sys.stdout.flush(); time.sleep(0.02)
"""


def bench_streaming(bench: Bench, repeat: int) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    llm = bench.llm(256)
    added_ms, pieces_per_token = [], []
    for _ in range(repeat):
        _, direct_first = bench.run_direct(llm)
        started = time.perf_counter()
        stream = llm.stream(PROMPT)
        next(stream)
        ours_first = time.perf_counter() - started
        pieces = 1 + sum(1 for _ in stream)
        added_ms.append((ours_first - direct_first) * 1000)
        pieces_per_token.append(pieces / 256)
    with tempfile.TemporaryDirectory() as scratch:
        stamper = Path(scratch) / "stamper"
        stamper.write_text(STAMPING_BINARY.format(python=sys.executable))
        stamper.chmod(0o755)
        stamped = LocalLLM(binary_path=str(stamper), model="stamper")
        delays_ms = []
        for _ in range(repeat):
            for piece in stamped.stream(PROMPT):
                now = time.monotonic()
                delays_ms += [(now - float(stamp)) * 1000 for stamp in piece.split()[-1:]]
    return {
        "first_piece_added_ms": summary(added_ms),
        "piece_delay_ms": summary(delays_ms),
        "pieces_per_token": summary(pieces_per_token),
    }


def bench_concurrency(bench: Bench) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    serial = bench.llm(32)
    with PeakMemory() as memory:
        elapsed = timed(lambda: [serial.generate(PROMPT) for _ in range(8)])
    rows["8 in series"] = {
        "seconds": elapsed,
        "calls_per_second": 8 / elapsed,
        "peak_rss_mib": memory.peak_mib,
    }
    for limit in (1, 2, 4):
        llm = bench.llm(32, max_concurrency=limit)

        async def burst(model: LocalLLM = llm) -> None:
            await asyncio.gather(*(model.agenerate(PROMPT) for _ in range(8)))

        with PeakMemory() as memory:
            elapsed = timed(lambda burst=burst: asyncio.run(burst()))
        rows[f"8 concurrent, max_concurrency={limit}"] = {
            "seconds": elapsed,
            "calls_per_second": 8 / elapsed,
            "peak_rss_mib": memory.peak_mib,
        }
    return rows


_EVAL_LINE = re.compile(r"(?<!prompt )eval time\s*=\s*([\d.]+) ms /\s*(\d+) runs")


def eval_ms_per_token(argv: list[str], env: dict[str, str], count: int) -> list[float]:
    """Run ``count`` copies of the binary at once; each one's llama.cpp eval ms per token."""
    children = [
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(count)
    ]
    figures = []
    for child in children:
        _, stderr = child.communicate()
        found = _EVAL_LINE.findall(stderr.decode("utf-8", errors="replace"))
        milliseconds, runs = found[-1]
        figures.append(float(milliseconds) / int(runs))
    return figures


def bench_shared_cores(bench: Bench, repeat: int) -> dict[str, Any]:
    """One or two llama.cpp runs at once, with OpenMP's own spin and with LocalLLM's."""
    from jazzmine.local.transports.config import SPIN_DEFAULTS, llama_environment

    ours = llama_environment(None)
    theirs = {k: v for k, v in ours.items() if k not in SPIN_DEFAULTS}
    argv = [
        bench.binary,
        "-m",
        bench.model,
        "-p",
        NAIVE_PROMPT,
        "-n",
        "64",
        "-c",
        "512",
        "--temp",
        "0",
        "--no-warmup",
        "--offline",
        "-no-cnv",
        *FIXED_LENGTH,
    ]
    figures: dict[str, list[float]] = {}
    for _ in range(repeat):
        for label, env in (("llama.cpp's own", theirs), ("LocalLLM's", ours)):
            for count in (1, 2):
                key = f"{label}|{count}"
                figures.setdefault(key, []).extend(eval_ms_per_token(argv, env, count))
    return {key: summary(values) for key, values in figures.items()}


def import_seconds(module: str) -> float | None:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout) if done.returncode == 0 else None


def bench_imports(repeat: int) -> dict[str, Any]:
    modules = [
        "jazzmine.local",
        "litellm",
        "langchain_community.llms.llamacpp",
        "ollama",
    ]
    rows: dict[str, Any] = {}
    for _ in range(repeat):  # interleaved, so a noisy moment hits every module alike
        for module in modules:
            seconds = import_seconds(module)
            if seconds is not None:
                rows.setdefault(module, []).append(seconds * 1000)
    return {module: summary(rows[module]) if module in rows else None for module in modules}


def load_cost(bench: Bench, context: int | None) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of a one-token run at a context size (None: the binary's)."""
    argv = [bench.binary, "-m", bench.model, "-p", "Hello", "-n", "1", "--no-warmup", "-no-cnv"]
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


def bench_context(bench: Bench, repeat: int) -> dict[str, Any]:
    llm = bench.llm(1)
    sized = llm.config.context_for_call(llm.build_request(PROMPT), bench.model)
    default_costs, sized_costs = [], []
    for _ in range(repeat):
        default_costs.append(load_cost(bench, None))
        sized_costs.append(load_cost(bench, sized))
    return {
        "binary default (the model's 32768)": {
            "seconds": summary([c[0] for c in default_costs]),
            "peak_rss_mib": summary([c[1] for c in default_costs]),
        },
        f"LocalLLM default, sized to the call ({sized})": {
            "seconds": summary([c[0] for c in sized_costs]),
            "peak_rss_mib": summary([c[1] for c in sized_costs]),
        },
    }


def plot(results: dict[str, Any]) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    from common import RESULTS

    overhead = results["overhead"]
    labels = list(overhead)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for offset, key in enumerate(("sync_ratio", "async_ratio", "naive_ratio")):
        xs = [i + (offset - 1) * width for i in range(len(labels))]
        ax.bar(xs, [overhead[t][key]["median"] for t in labels], width, label=key.replace("_", " "))
    ax.axhline(1.03, color="red", linestyle="--", linewidth=1, label="goal 1.03")
    ax.set_xticks(range(len(labels)), [f"{t} tokens" for t in labels])
    ax.set_ylabel("wall time / bare binary (median of pairs)")
    ax.set_ylim(0.8, max(1.3, max(overhead[t]["naive_ratio"]["median"] for t in labels) * 1.05))
    ax.legend()
    ax.set_title("LocalLLM.generate against the same generation by the binary alone")
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_overhead.png", dpi=100)
    imports = {k: v for k, v in results["imports"].items() if v}
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(list(imports), [v["median"] for v in imports.values()])
    ax.axvline(30, color="red", linestyle="--", linewidth=1, label="goal 30 ms")
    ax.set_xscale("log")
    ax.set_xlabel("import time, ms (median, fresh interpreter each)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_imports.png", dpi=100)
    return ["perf_overhead.png", "perf_imports.png"]


def report(results: dict[str, Any], plots: list[str]) -> str:
    lines = [
        f"# Per-call mode: LocalLLM over the bare binary ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        f"Repeats per figure: {results['repeat']}; median (min–max).",
        "",
        "## 1 & 5. Wall time over the same generation run by the binary alone",
        "",
        "| reply tokens | bare binary, s | generate / bare | agenerate / bare "
        "| naive spec / bare |",
        "|---:|---:|---:|---:|---:|",
    ]
    for tokens, row in results["overhead"].items():
        lines.append(
            f"| {tokens} | {fmt(row['direct_seconds'])} | {fmt(row['sync_ratio'])} "
            f"| {fmt(row['async_ratio'])} | {fmt(row['naive_ratio'])} |"
        )
    stream = results["streaming"]
    lines += [
        "",
        "## 2. Streaming, 256-token replies",
        "",
        "| figure | median (min–max) |",
        "|---|---|",
        "| first piece, ms after the bare binary's first stdout byte "
        f"| {fmt(stream['first_piece_added_ms'], 1)} |",
        "| delay from a token leaving the binary to the caller, ms (stamped stand-in) "
        f"| {fmt(stream['piece_delay_ms'], 2)} |",
        f"| pieces per generated token | {fmt(stream['pieces_per_token'], 2)} |",
        "",
        "## 3. Eight calls with 32-token replies",
        "",
    ]
    lines += concurrency_table(results["concurrency"])
    lines += ["", "## 4. Import time, ms (fresh interpreter each)", "", "| module | ms |"]
    lines.append("|---|---:|")
    for module, stats in results["imports"].items():
        lines.append(f"| `{module}` | {fmt(stats, 1) if stats else 'not installed'} |")
    lines += ["", "## 6. Context size: a one-token run", "", "| context | wall s | peak RSS MiB |"]
    lines.append("|---|---:|---:|")
    for label, row in results["context"].items():
        lines.append(f"| {label} | {fmt(row['seconds'])} | {fmt(row['peak_rss_mib'], 0)} |")
    lines += [
        "",
        "## 7. Two llama.cpp processes sharing the cores: eval ms per token (64 tokens)",
        "",
        "| OpenMP wait | one run alone | each of two runs at once |",
        "|---|---:|---:|",
    ]
    shared = results["shared_cores"]
    for label in ("llama.cpp's own", "LocalLLM's"):
        lines.append(
            f"| {label} | {fmt(shared[label + '|1'], 1)} | {fmt(shared[label + '|2'], 1)} |"
        )
    lines += ["", *[f"![{name}]({name})" for name in plots]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench = Bench()
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat}
    steps = {
        "overhead": lambda: bench_overhead(bench, args.repeat),
        "streaming": lambda: bench_streaming(bench, args.repeat),
        "concurrency": lambda: bench_concurrency(bench),
        "imports": lambda: bench_imports(args.repeat),
        "context": lambda: bench_context(bench, args.repeat),
        "shared_cores": lambda: bench_shared_cores(bench, args.repeat),
    }
    run_steps(results, steps)
    save("perf", results, report(results, plot(results)))


if __name__ == "__main__":
    main()
