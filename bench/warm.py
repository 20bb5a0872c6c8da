"""Warm mode against per-call mode and llama-cpp-python in-process, side by side.

    bash bench/run.sh                      (all benchmarks)
    .venv-bench/bin/python bench/warm.py [--repeat N]

1. Replies of 8 tokens: per-call vs warm vs llama-cpp-python (the peer), paired.
2. A 10-turn chat with a system prompt of about 1,500 tokens: time per turn and in total,
   and prompt tokens evaluated per turn.
3. 8 concurrent agenerate calls with 32-token replies at max_concurrency 1, 2 and 4, warm
   vs per-call: throughput and peak resident memory of the whole process tree.
Writes bench/results/warm.md, warm.json and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

SHORT = [MessagePart("user", "List the planets of the solar system.")]
FACTS = [
    "The Sun holds more than ninety-nine percent of the mass of the solar system.",
    "Jupiter is the largest planet and has a faint system of rings.",
    "Saturn's rings are made mostly of water ice with some rock and dust.",
    "Mars has the tallest known volcano, Olympus Mons, about three times Everest.",
    "Venus rotates backwards and has the hottest surface of any planet.",
    "Mercury has almost no atmosphere and huge swings in temperature.",
    "Neptune has the strongest winds measured on any planet in the solar system.",
    "Uranus rotates on its side, probably after an ancient collision.",
]
# About 1,500 tokens of instructions and reference text, as an agent's system prompt is.
SYSTEM = MessagePart(
    "system",
    "You are an astronomy tutor. Answer briefly and accurately using these notes.\n"
    + "\n".join(f"Note {i}: {FACTS[i % len(FACTS)]}" for i in range(80)),
)
QUESTIONS = [
    "Which planet is the largest?",
    "What are Saturn's rings made of?",
    "Where is Olympus Mons?",
    "Which planet rotates backwards?",
    "Does Mercury have an atmosphere?",
    "Which planet has the strongest winds?",
    "Why does Uranus rotate on its side?",
    "How much of the mass is in the Sun?",
    "Does Jupiter have rings?",
    "Which planet is the hottest?",
]
FIXED_LENGTH = ("--ignore-eos",)


def llm(**options: Any) -> LocalLLM:
    options.setdefault("seed", 1)
    return LocalLLM(binary_path=completion_binary(), model=default_model(), **options)


def bench_short_replies(repeat: int) -> dict[str, Any]:
    per_call = llm(max_tokens=8, extra_args=FIXED_LENGTH)
    warm = llm(max_tokens=8, extra_args=FIXED_LENGTH, keep_alive=-1, n_ctx=4096)
    warm.generate(SHORT)  # load once; every warm call after this is what a user sees
    peer = None
    try:
        from llama_cpp import Llama

        # All cores, as llama.cpp uses; llama-cpp-python would otherwise take half of them.
        peer = Llama(
            model_path=default_model(), n_ctx=4096, verbose=False, seed=1, n_threads=os.cpu_count()
        )
        prompt = per_call.build_request(SHORT).prompt
        peer(prompt, max_tokens=8, temperature=0.0)
    except ImportError:
        prompt = ""
    per_call_s, warm_s, peer_s, speedup, peer_ratio = [], [], [], [], []
    for _ in range(repeat):
        cold = timed(lambda: per_call.generate(SHORT))
        hot = timed(lambda: warm.generate(SHORT))
        per_call_s.append(cold)
        warm_s.append(hot)
        speedup.append(cold / hot)
        if peer is not None:
            inproc = timed(lambda: peer(prompt, max_tokens=8, temperature=0.0))
            peer_s.append(inproc)
            peer_ratio.append(hot / inproc)
    warm.close()
    return {
        "per_call_seconds": summary(per_call_s),
        "warm_seconds": summary(warm_s),
        "llama_cpp_python_seconds": summary(peer_s) if peer_s else None,
        "per_call_over_warm": summary(speedup),
        "warm_over_llama_cpp_python": summary(peer_ratio) if peer_ratio else None,
    }


def run_chat(model_llm: LocalLLM) -> list[dict[str, Any]]:
    history = [SYSTEM]
    turns = []
    for question in QUESTIONS:
        history.append(MessagePart("user", question))
        started = time.perf_counter()
        reply = model_llm.generate(history)
        seconds = time.perf_counter() - started
        metrics = reply.api_metrics or {}
        turns.append(
            {
                "seconds": seconds,
                "prompt_tokens": reply.usage.prompt_tokens,
                "prompt_tokens_evaluated": metrics.get(
                    "prompt_tokens_evaluated", reply.usage.prompt_tokens
                ),
                "completion_tokens": reply.usage.completion_tokens,
            }
        )
        history.append(MessagePart("assistant", reply.text))
    return turns


def bench_chat() -> dict[str, Any]:
    per_call = llm(max_tokens=16, n_ctx=4096)
    warm = llm(max_tokens=16, keep_alive=-1, n_ctx=4096)
    results = {"per_call": run_chat(per_call), "warm": run_chat(warm)}
    warm.close()
    return results


def bench_concurrency() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for limit in (1, 2, 4):
        for mode in ("per-call", "warm"):
            options: dict[str, Any] = {"max_tokens": 32, "extra_args": FIXED_LENGTH}
            if mode == "warm":
                options.update(keep_alive=-1, n_ctx=1024)
            model_llm = llm(max_concurrency=limit, **options)
            if mode == "warm":
                model_llm.generate(SHORT, max_tokens=1)  # loaded before the clock starts

            async def burst(target: LocalLLM = model_llm) -> None:
                await asyncio.gather(*(target.agenerate(SHORT) for _ in range(8)))

            with PeakMemory() as memory:
                seconds = timed(lambda burst=burst: asyncio.run(burst()))
            model_llm.close()
            rows[f"{mode}, max_concurrency={limit}"] = {
                "seconds": seconds,
                "calls_per_second": 8 / seconds,
                "peak_rss_mib": memory.peak_mib,
            }
    return rows


def plot(results: dict[str, Any]) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    from common import RESULTS

    chat = results["chat"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    turns = range(1, len(chat["warm"]) + 1)
    for mode in ("per_call", "warm"):
        left.plot(turns, [t["seconds"] for t in chat[mode]], marker="o", label=mode)
        right.plot(
            turns, [t["prompt_tokens_evaluated"] for t in chat[mode]], marker="o", label=mode
        )
    left.set_yscale("log")
    left.set_xlabel("turn")
    left.set_ylabel("seconds")
    left.legend()
    right.set_xlabel("turn")
    right.set_ylabel("prompt tokens evaluated")
    right.legend()
    fig.suptitle("10-turn chat with a ~1,500-token system prompt")
    fig.tight_layout()
    fig.savefig(RESULTS / "warm_chat.png", dpi=100)
    return ["warm_chat.png"]


def report(results: dict[str, Any], plots: list[str]) -> str:
    short = results["short"]
    lines = [
        f"# Warm mode ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        f"Repeats: {results['repeat']}; median (min–max).",
        "",
        "## 1. Replies of 8 tokens",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| per-call, s | {fmt(short['per_call_seconds'])} |",
        f"| warm, s | {fmt(short['warm_seconds'])} |",
    ]
    if short["llama_cpp_python_seconds"]:
        lines.append(
            f"| llama-cpp-python in-process, s | {fmt(short['llama_cpp_python_seconds'])} |"
        )
    lines.append(f"| per-call / warm (goal >= 5) | {fmt(short['per_call_over_warm'], 1)} |")
    if short["warm_over_llama_cpp_python"]:
        lines.append(
            "| warm / llama-cpp-python (goal <= 1.2) "
            f"| {fmt(short['warm_over_llama_cpp_python'], 2)} |"
        )
    chat = results["chat"]
    lines += [
        "",
        "## 2. A 10-turn chat with a system prompt of about 1,500 tokens (16-token replies)",
        "",
        "| turn | prompt tokens | per-call s | per-call evaluated | warm s | warm evaluated "
        "| per-call / warm |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, (cold, hot) in enumerate(zip(chat["per_call"], chat["warm"], strict=True), start=1):
        lines.append(
            f"| {index} | {hot['prompt_tokens']} | {cold['seconds']:.2f} "
            f"| {cold['prompt_tokens_evaluated']} | {hot['seconds']:.2f} "
            f"| {hot['prompt_tokens_evaluated']} | {cold['seconds'] / hot['seconds']:.1f} |"
        )
    total_cold = sum(t["seconds"] for t in chat["per_call"])
    total_hot = sum(t["seconds"] for t in chat["warm"])
    later = [
        c["seconds"] / h["seconds"]
        for c, h in zip(chat["per_call"][1:], chat["warm"][1:], strict=True)
    ]
    lines += [
        f"| all | | {total_cold:.2f} | | {total_hot:.2f} | | {total_cold / total_hot:.1f} |",
        "",
        f"From turn 2 on, per-call / warm: smallest {min(later):.1f} (goal >= 10); "
        f"whole chat {total_cold / total_hot:.1f} (goal >= 6).",
        "",
        "## 3. Eight concurrent agenerate calls, 32-token replies",
        "",
    ]
    lines += concurrency_table(results["concurrency"])
    lines += ["", *[f"![{name}]({name})" for name in plots]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat}
    steps = {
        "short": lambda: bench_short_replies(args.repeat),
        "chat": bench_chat,
        "concurrency": bench_concurrency,
    }
    run_steps(results, steps)
    save("warm", results, report(results, plot(results)))


if __name__ == "__main__":
    main()
