"""One jazzmine agent turn: the framework's own LocalLLM against this project's, in one run.

    bash tests/envs/framework.sh .venv     (once: the framework's virtualenv)
    .venv/bin/python bench/agent.py [--repeat N] [--max-tokens N]

The script re-runs itself in the framework's virtualenv (with tests/framework_stubs on
PYTHONPATH), where the published jazzmine 0.1.42 is installed beside this project.

Four agents are built with the framework's AgentBuilder (JSON message store, no memory,
tools or server), the same but for their LLM:
  * the framework's ``jazzmine.core.llm.LocalLLM``: ``subprocess.run([binary, "-p",
    prompt])`` on a "Role: text" prompt, pointed at the same llama-completion through a
    small wrapper script that adds the model and the flags it needs to run at all (the
    same reply cap, temperature and seed as the others, no echo of the prompt);
  * the same, with the short OpenMP spin LocalLLM gives its children (GOMP_SPINCOUNT), to
    tell that part of the difference from the rest;
  * this project's LocalLLM, a process per call;
  * this project's LocalLLM, warm (keep_alive: a llama-server kept loaded);
  * the same with ``framework_shapes=False``: the parts' replies left unconstrained, so the
    gain of the shapes (issue 20) is measured side by side, not claimed.
Each repetition times one first turn of a new conversation on each agent (the enhancer,
the agent loop and the title: three LLM calls), in an order that alternates between
repetitions; each turn is timed alone, and its ratio to the framework's
LocalLLM is taken pair by pair. Per turn it also counts the framework's fallback logs and
the prompt tokens the model read (evaluated, not taken from the server's cache). Replies
end where each provider ends them: the framework's
LocalLLM has no stop sequence, so it runs to the cap, while LocalLLM stops at the end of
the model's turn; the reply length is in the table. Writes bench/results/agent.md and
agent.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tests" / "framework_stubs"


def framework_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("JAZZMINE_FRAMEWORK_VENV") or cache / "jazzmine" / "venv-framework")


def _reexec_in_framework_venv() -> None:
    """Run this script again where the framework is installed (no-op when already there)."""
    try:
        import jazzmine.core.llm  # noqa: F401
    except ImportError:
        pass
    else:
        return
    python = framework_venv() / "bin" / "python"
    if not python.exists():
        sys.exit(
            f"no framework virtualenv at {framework_venv()}: bash tests/envs/framework.sh .venv"
        )
    # JAZZMINE_LOCAL_SRC: this tree's jazzmine.local, whichever checkout the venv installed.
    env = {**os.environ, "PYTHONPATH": str(STUBS), "JAZZMINE_LOCAL_SRC": str(ROOT / "src")}
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], env)


if __name__ == "__main__":
    _reexec_in_framework_venv()

# Below runs in the framework's virtualenv only.
import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "envs"))
import jazzmine.core.llm as framework  # noqa: E402
from common import (  # noqa: E402
    completion_binary,
    default_model,
    fmt,
    machine,
    machine_line,
    save,
    summary,
)
from framework_probe import (  # noqa: E402
    AGENT_ERROR_REPLY,
    PROVIDER_ERROR_KINDS,
    Observer,
    fallback_records,
)
from jazzmine.core.builder import AgentBuilder  # noqa: E402

from jazzmine.local import LocalLLM  # noqa: E402

QUESTIONS = [
    "Hi! Are you open on Sunday evening?",
    "Do you have vegetarian dishes?",
    "Can I bring my dog?",
    "Is there parking nearby?",
    "Do you take reservations for large groups?",
]
SIDES = (
    "framework LocalLLM (-p)",
    "framework LocalLLM (-p), short OpenMP spin",
    "LocalLLM per call",
    "LocalLLM warm",
    "LocalLLM warm, framework_shapes=False",
)
# What LocalLLM sets for its llama.cpp children unless told otherwise (config.SPIN_DEFAULTS):
# OpenMP threads that spin long steal the core from everything else on a loaded machine. The
# second side is the framework's LocalLLM with it too, to show what the rest is worth.
SHORT_SPIN = "GOMP_SPINCOUNT=1000"


def naive_wrapper(folder: Path, max_tokens: int, *, short_spin: bool = False) -> str:
    """The binary the framework's LocalLLM runs: llama-completion with the model and the
    flags a plain ``binary -p PROMPT`` needs (no prompt echo, no chat mode, same cap)."""
    flags = [
        "-m", default_model(),
        "-n", str(max_tokens),
        "--temp", "0.0",
        "-s", "1",
        "--no-display-prompt",
        "--no-conversation",
        "--simple-io",
        "--offline",
        "--no-warmup",
    ]  # fmt: skip
    path = folder / ("llama-p-short-spin" if short_spin else "llama-p")
    command = shlex.join([completion_binary(), *flags])
    export = f"export {SHORT_SPIN}\n" if short_spin else ""
    path.write_text(f'#!/bin/sh\n{export}exec {command} "$@"\n')
    path.chmod(0o755)
    return str(path)


async def build(llm: Any) -> tuple[Any, Any]:
    return (
        await AgentBuilder(
            name="Basil",
            agent_id="trattoria",
            personality="A friendly host at a small Italian restaurant.",
        )
        .with_llm(llm)
        .build()
    )


def judged(turn: Any, calls: list[dict[str, Any]], fallbacks: list[dict[str, str]]) -> str:
    if (
        any(entry.startswith(PROVIDER_ERROR_KINDS) for entry in turn.errors)
        or any("error" in call for call in calls)
        or AGENT_ERROR_REPLY in turn.response
    ):
        return "provider_error"
    return "parse_fallback" if fallbacks else "ok"


async def bench(repeat: int, max_tokens: int, folder: Path) -> dict[str, Any]:
    observer = Observer()
    llms: dict[str, Any] = {
        SIDES[0]: framework.LocalLLM(
            binary_path=naive_wrapper(folder, max_tokens), model=Path(default_model()).stem
        ),
        SIDES[1]: framework.LocalLLM(
            binary_path=naive_wrapper(folder, max_tokens, short_spin=True),
            model=Path(default_model()).stem,
        ),
        SIDES[2]: LocalLLM(max_tokens=max_tokens, seed=1),
        SIDES[3]: LocalLLM(max_tokens=max_tokens, seed=1, keep_alive=600),
        SIDES[4]: LocalLLM(max_tokens=max_tokens, seed=1, keep_alive=600, framework_shapes=False),
    }
    agents = {}
    for side, llm in llms.items():
        observer.calls.watch(llm, side)
        agents[side] = await build(llm)
    # Warm mode's first call starts the server and loads the model: timed apart, and the
    # framework's LocalLLM and per-call mode pay the same on their first call too.
    first: dict[str, float] = {}
    for side, (agent, _) in agents.items():
        started = time.perf_counter()
        await agent.chat(user_id="u-0", conversation_id=f"first-{side}", content="Hello!")
        first[side] = time.perf_counter() - started
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    try:
        for rep in range(repeat):
            order = SIDES if rep % 2 == 0 else tuple(reversed(SIDES))
            question = QUESTIONS[rep % len(QUESTIONS)]
            for side in order:
                agent = agents[side][0]
                first_call, first_record = len(observer.calls.calls), len(observer.logs.records)
                started = time.perf_counter()
                turn = await agent.chat(
                    user_id=f"u-{rep}", conversation_id=f"c-{rep}-{side}", content=question
                )
                seconds = time.perf_counter() - started
                calls = observer.calls.since(first_call)
                fallbacks = fallback_records(observer.logs.since(first_record))
                rows[side].append(
                    {
                        "seconds": seconds,
                        # The machine is shared: how busy it was says how far to trust a row.
                        "load_average_1min": os.getloadavg()[0],
                        "call_seconds": [call["seconds"] for call in calls],
                        "completion_tokens": [call.get("completion_tokens") for call in calls],
                        "question": question,
                        "response": turn.response,
                        "errors": turn.errors,
                        "outcome": judged(turn, calls, fallbacks),
                        "llm_calls": len(calls),
                        "reply_chars": sum(len(call.get("text", "")) for call in calls),
                        "callers": [call["caller"].rsplit(".", 1)[-1] for call in calls],
                        "fallbacks": [record["message"][:160] for record in fallbacks],
                        "prompt_tokens": sum(call.get("prompt_tokens") or 0 for call in calls),
                        # Warm: what the server's cache held; None where nothing says.
                        "prompt_tokens_reused": sum(
                            call.get("prompt_tokens_reused") or 0 for call in calls
                        ),
                    }
                )
    finally:
        for agent, teardown in agents.values():
            await agent.drain()
            await teardown()
    return {"first_turn_seconds": first, "turns": rows}


def figures(results: dict[str, Any]) -> dict[str, Any]:
    turns = results["turns"]
    base = [row["seconds"] for row in turns[SIDES[0]]]
    out: dict[str, Any] = {}
    for side in SIDES:
        rows = turns[side]
        seconds = [row["seconds"] for row in rows]
        outcomes = sorted({row["outcome"] for row in rows})
        out[side] = {
            "seconds": summary(seconds),
            "ratio_to_framework": summary(
                [ours / theirs for ours, theirs in zip(seconds, base, strict=True)]
            ),
            "llm_calls": statistics.median(row["llm_calls"] for row in rows),
            "reply_chars": statistics.median(row["reply_chars"] for row in rows),
            "outcomes": {name: sum(row["outcome"] == name for row in rows) for name in outcomes},
            "fallbacks_per_turn": statistics.mean(len(row["fallbacks"]) for row in rows),
            "prompt_tokens_read": statistics.median(
                row["prompt_tokens"] - row["prompt_tokens_reused"] for row in rows
            ),
            "prompt_tokens": statistics.median(row["prompt_tokens"] for row in rows),
            "first_turn_seconds": results["first_turn_seconds"][side],
            "load_average_1min": statistics.median(row["load_average_1min"] for row in rows),
        }
    return out


def report(results: dict[str, Any]) -> str:
    lines = [
        "# One jazzmine agent turn: the framework's LocalLLM and this project's "
        f"({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        f"Framework: jazzmine 0.1.42 (AgentBuilder, JSON message store, no memory, tools or "
        f"server). Model: {Path(results['model']).name}. Reply cap {results['max_tokens']} "
        f"tokens, temperature 0, seed 1. Repetitions: {results['repeat']}, order alternating; "
        "median (min–max).",
        "",
        "A turn is the first of a new conversation: the message enhancer, the agent loop "
        "and the title, three LLM calls.",
        "",
        "| LLM | s per turn | time / framework LocalLLM (paired) | LLM calls | reply chars per "
        "turn | outcomes | fallbacks per turn | prompt tokens read per turn (of all) "
        "| first turn of the run, s | load average (1 min) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for side, row in results["figures"].items():
        outcomes = ", ".join(f"{name} {count}" for name, count in row["outcomes"].items())
        lines.append(
            f"| {side} | {fmt(row['seconds'], 2)} | {fmt(row['ratio_to_framework'], 2)} "
            f"| {row['llm_calls']:g} | {row['reply_chars']:g} | {outcomes} "
            f"| {row['fallbacks_per_turn']:.1f} "
            f"| {row['prompt_tokens_read']:g} ({row['prompt_tokens']:g}) "
            f"| {row['first_turn_seconds']:.2f} | {row['load_average_1min']:.1f} |"
        )
    lines += [
        "",
        "The machine is shared with other work: the load average, taken after each turn "
        "(median per row), is the number of runnable processes on its two cores; above 2, "
        "the times measure the contention as much as the providers.",
        "",
        f"The short OpenMP spin row runs the framework's LocalLLM with {SHORT_SPIN}, "
        "which LocalLLM sets for its llama.cpp children unless told otherwise.",
        "",
        "Outcomes: `ok`, no fallback; `parse_fallback`, the framework could not parse the "
        "model's JSON (the message enhancer's safe defaults) but every LLM call returned; "
        "`provider_error`, an LLM call raised and the agent answered with its error reply.",
        "",
        "First answer of each (the last repetition):",
        "",
    ]
    for side in SIDES:
        row = results["turns"][side][-1]
        answer = " ".join(row["response"].split())
        lines.append(f"- {side}: {answer[:200]!r}{' …' if len(answer) > 200 else ''}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    if args.repeat < 3:
        parser.error("--repeat must be at least 3")
    results: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "max_tokens": args.max_tokens,
        "model": default_model(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        here = os.getcwd()
        os.chdir(scratch)  # the framework's AgentBuilder writes a state file where it runs
        try:
            # The framework prints a banner per agent on stdout: keep stdout for the table.
            with contextlib.redirect_stdout(sys.stderr):
                results.update(asyncio.run(bench(args.repeat, args.max_tokens, Path(scratch))))
        finally:
            os.chdir(here)
    results["figures"] = figures(results)
    save("agent", results, report(results))


if __name__ == "__main__":
    main()
