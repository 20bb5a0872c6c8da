"""A GPU backend against the CPU build: build it, then time the same calls on both.

    .venv/bin/python bench/gpu.py [--backend auto|cuda|vulkan|metal] [--repeat N]
                                  [--max-tokens N] [--model FILE.gguf]

To be run on a machine with a GPU (the project's CI machines have none: there it stops
with the dry run). It runs ``jazzmine setup --backend X`` (building X under its own
cache key, beside the CPU build), lists the devices llama.cpp sees, then times per-call
generations with the CPU build (``n_gpu_layers=0``) and the GPU build (every layer
offloaded, ``n_gpu_layers=999``), alternating, with the same prompt, seed and reply
cap. Prints a table of median wall time and tokens per second; writes
bench/results/gpu.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jazzmine.local import LocalLLM, MessagePart, defaults
from jazzmine.local.setup import backends
from jazzmine.local.setup.build import ensure_build
from jazzmine.local.setup.run import dry_run, run_setup

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = [MessagePart("user", "Write a short paragraph about the sea. " * 8)]


def time_calls(llm: LocalLLM, repeat: int) -> tuple[float, float]:
    """Median seconds per call and median completion tokens per second."""
    seconds, rates = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        response = llm.generate(PROMPT)
        took = time.perf_counter() - started
        seconds.append(took)
        tokens = response.usage.completion_tokens if response.usage else 0
        rates.append(tokens / took if took else 0.0)
    return statistics.median(seconds), statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=[*backends.CHOICES])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", help="a GGUF (default: the default model)")
    args = parser.parse_args()

    choice = dry_run(print, args.backend)
    if choice.backend == "cpu":
        print("no GPU backend here (the dry run above is all): nothing to compare", file=sys.stderr)
        return 1
    result = run_setup(print, choice.backend)
    if defaults.build_backend() != choice.backend:
        print(f"the {choice.backend} build failed: see the set-up lines above", file=sys.stderr)
        return 1
    model = args.model or str(result.model_path)
    gpu_bin = defaults.build_bin_dir(choice.backend) / "llama-completion"
    cpu_bin = defaults.build_bin_dir("cpu") / "llama-completion"
    if not cpu_bin.exists():
        ensure_build(print, "cpu")  # the CPU build to compare with (the GPU one stays chosen)
    devices = subprocess.run(
        [str(gpu_bin), "--list-devices"], capture_output=True, text=True, timeout=60
    ).stdout
    print(devices)

    runs = {
        "cpu": LocalLLM(
            binary_path=cpu_bin, model=model, n_gpu_layers=0, max_tokens=args.max_tokens, seed=1
        ),
        choice.backend: LocalLLM(
            binary_path=gpu_bin, model=model, n_gpu_layers=999, max_tokens=args.max_tokens, seed=1
        ),
    }
    for llm in runs.values():
        llm.generate(PROMPT)  # warm the page cache and the driver once
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_ in range(args.repeat):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            timings[name].append(time_calls(runs[name], 1))
    lines = [
        f"# {choice.backend} against the CPU build ({Path(model).name}, "
        f"{args.max_tokens} tokens, {args.repeat} rounds)",
        "",
        "```",
        devices.strip(),
        "```",
        "",
        "| build | median s/call | median tokens/s |",
        "|---|---|---|",
    ]
    for name, values in timings.items():
        seconds = statistics.median(v[0] for v in values)
        rate = statistics.median(v[1] for v in values)
        lines.append(f"| {name} | {seconds:.3f} | {rate:.1f} |")
    for llm in runs.values():
        llm.close()
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
