"""Helpers shared by the benchmark scripts: summaries, machine facts, memory, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def machine() -> dict[str, Any]:
    from jazzmine.local import defaults

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "llama_cpp_python_sdist": defaults.LLAMA_CPP_PYTHON_VERSION,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
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
        pid = int(entry)
        children.setdefault(int(fields["PPid"]), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


class PeakMemory:
    """Samples the resident memory of this process and its descendants every 10 ms."""

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

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(os.getpid()))
            time.sleep(0.01)


def machine_line(facts: dict[str, Any]) -> str:
    return "Machine: " + ", ".join(f"{key} {value}" for key, value in facts.items())


def completion_binary() -> str:
    """The llama-completion the set-up built."""
    from jazzmine.local import defaults

    return str(defaults.build_bin_dir() / "llama-completion")


def default_model() -> str:
    from jazzmine.local import defaults

    return str(defaults.ensure_default_model())


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_steps(results: dict[str, Any], steps: dict[str, Callable[[], Any]]) -> None:
    """Run each step in order, saying which on stderr, and keep its figures under its name."""
    for name, step in steps.items():
        print(f"bench: {name}", file=sys.stderr, flush=True)
        results[name] = step()


def save(name: str, results: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def pyplot() -> Any:
    """matplotlib's pyplot, or None where it is not installed (plots are then skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def concurrency_table(rows: dict[str, Any]) -> list[str]:
    """Markdown rows: a run's label, seconds, calls/s and peak RSS of the process tree."""
    lines = [
        "| run | seconds | calls/s | peak RSS of the process tree, MiB |",
        "|---|---:|---:|---:|",
    ]
    for label, row in rows.items():
        lines.append(
            f"| {label} | {row['seconds']:.2f} | {row['calls_per_second']:.2f} "
            f"| {row['peak_rss_mib']:.0f} |"
        )
    return lines
