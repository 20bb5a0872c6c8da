"""The headline figures in one short run, for checking a change: per-call overhead over the
bare binary, warm over per call, and import time. Side by side in one run, as ratios.

    python bench/check.py [--repeat N]      -> bench/results/check.md (and .json)

The full tables come from perf.py and warm.py (bench/run.sh)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from common import fmt, machine, machine_line, run_steps, save, summary, timed
from perf import PROMPT, Bench, import_seconds
from warm import bench_short_replies


def overhead(bench: Bench, repeat: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for tokens in (1, 32):
        llm = bench.llm(tokens)
        sync_ratio, async_ratio, bare = [], [], []
        for _ in range(repeat):
            direct, _ = bench.run_direct(llm)
            bare.append(direct)
            sync_ratio.append(timed(lambda llm=llm: llm.generate(PROMPT)) / direct)
            async_ratio.append(timed(lambda llm=llm: asyncio.run(llm.agenerate(PROMPT))) / direct)
        rows[str(tokens)] = {
            "bare_seconds": summary(bare),
            "generate_over_bare": summary(sync_ratio),
            "agenerate_over_bare": summary(async_ratio),
        }
    return rows


def imports(repeat: int) -> dict[str, Any]:
    statements = {
        "import jazzmine.local": "jazzmine.local",
        "from jazzmine.local import LocalLLM": "jazzmine.local.llm",
    }
    found: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(repeat):
        for name, module in statements.items():
            seconds = import_seconds(module)
            if seconds is not None:
                found[name].append(seconds * 1000)
    return {name: summary(values) for name, values in found.items()}


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Headline check ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        f"Repeats: {results['repeat']}; median (min–max).",
        "",
        "| reply tokens | bare binary, s | generate / bare | agenerate / bare |",
        "|---:|---:|---:|---:|",
    ]
    for tokens, row in results["overhead"].items():
        lines.append(
            f"| {tokens} | {fmt(row['bare_seconds'])} | {fmt(row['generate_over_bare'])} "
            f"| {fmt(row['agenerate_over_bare'])} |"
        )
    warm = results["warm"]
    lines += [
        "",
        "| warm mode, 8-token replies | value |",
        "|---|---:|",
        f"| per call, s | {fmt(warm['per_call_seconds'])} |",
        f"| warm, s | {fmt(warm['warm_seconds'])} |",
        f"| per call / warm | {fmt(warm['per_call_over_warm'])} |",
        "",
        "| import, fresh interpreter | ms |",
        "|---|---:|",
    ]
    for name, figure in results["imports"].items():
        lines.append(f"| `{name}` | {fmt(figure)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench = Bench()
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat}
    run_steps(
        results,
        {
            "overhead": lambda: overhead(bench, args.repeat),
            "warm": lambda: bench_short_replies(args.repeat),
            "imports": lambda: imports(args.repeat * 2),
        },
    )
    save("check", results, report(results))


if __name__ == "__main__":
    main()
