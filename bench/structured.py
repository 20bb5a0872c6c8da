"""Chat templates and structured output.

    .venv-bench/bin/python bench/structured.py [--repeat N]

1. Time to read the chat template and the BOS/EOS strings from the default model's GGUF
   header: LocalLLM's reader (first read in a fresh interpreter) against the `gguf`
   package's full reader (which walks every token).
2. Twenty extraction prompts answered by the default model (warm and per call,
   temperature 0) with and without the JSON schema: the share of replies that parse and
   validate, seconds per reply, and generated tokens per second of wall time.
Writes bench/results/structured.md and structured.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from common import fmt, machine, machine_line, run_steps, save, summary

from jazzmine.local import LocalLLM, MessagePart, defaults

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
}
PEOPLE = [
    ("Alice", 30, "Paris"),
    ("Bob", 45, "Rome"),
    ("Chen", 27, "Shanghai"),
    ("Dara", 52, "Dublin"),
    ("Emil", 19, "Oslo"),
    ("Fatima", 34, "Cairo"),
    ("Goran", 61, "Zagreb"),
    ("Hana", 23, "Kyoto"),
    ("Ivan", 38, "Sofia"),
    ("Jia", 29, "Taipei"),
    ("Kofi", 44, "Accra"),
    ("Lena", 31, "Berlin"),
    ("Mateo", 26, "Lima"),
    ("Nia", 48, "Nairobi"),
    ("Omar", 55, "Amman"),
    ("Priya", 33, "Pune"),
    ("Quinn", 40, "Boston"),
    ("Rosa", 22, "Madrid"),
    ("Sami", 36, "Tunis"),
    ("Tove", 58, "Malmo"),
]


def first_read_ms(reader: str) -> float:
    """Milliseconds for a first read in a fresh interpreter (imports excluded)."""
    model = str(defaults.ensure_default_model())
    code = {
        "jazzmine": (
            "from jazzmine.local.template.render import template_from_gguf\n"
            "from jazzmine.local.gguf.reader import read_tokenizer_info\n"
            "import time; t = time.perf_counter()\n"
            f"info = read_tokenizer_info({model!r}); template_from_gguf({model!r})\n"
            "assert info.bos_token == '<bos>' and info.eos_token == '<eos>'\n"
            "print((time.perf_counter() - t) * 1000)"
        ),
        "gguf": (
            "from gguf import GGUFReader\n"
            "import time; t = time.perf_counter()\n"
            f"reader = GGUFReader({model!r})\n"
            "tokens = reader.fields['tokenizer.ggml.tokens']\n"
            "bos = int(reader.fields['tokenizer.ggml.bos_token_id'].parts[-1][0])\n"
            "text = bytes(tokens.parts[tokens.data[bos]]).decode()\n"
            "template = reader.fields.get('tokenizer.chat_template')\n"
            "assert text == '<bos>'\n"
            "print((time.perf_counter() - t) * 1000)"
        ),
    }[reader]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip())


def bench_template_read(repeat: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for reader in ("jazzmine", "gguf"):
        try:
            rows[reader] = summary([first_read_ms(reader) for _ in range(repeat)])
        except RuntimeError as error:
            rows[reader] = {"error": str(error).splitlines()[-1]}
    return rows


def valid(text: str) -> bool:
    try:
        import jsonschema

        jsonschema.validate(json.loads(text), SCHEMA)
    except Exception:
        return False
    return True


SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}


def bench_extraction() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for mode, keep_alive in (("warm", -1), ("per call", None)):
        llm = LocalLLM(keep_alive=keep_alive, max_tokens=48, seed=1, n_ctx=1024)
        try:
            # Warm: the server is loaded before the clock. Per call: the page cache is warm.
            llm.generate([MessagePart("user", "hello")], max_tokens=1)
            for label, options in (("without schema", {}), ("with schema", SCHEMA_FORMAT)):
                rows[f"{mode}, {label}"] = extraction_row(llm, options)
        finally:
            llm.close()
    return rows


def extraction_row(llm: LocalLLM, options: dict[str, Any]) -> dict[str, Any]:
    ok, rates, walls, tokens = 0, [], [], 0
    extra = {"response_format": options} if options else {}
    for name, age, city in PEOPLE:
        question = f"Extract name, age and city as JSON: {name}, {age}, lives in {city}."
        started = time.perf_counter()
        reply = llm.generate([MessagePart("user", question)], **extra)
        seconds = time.perf_counter() - started
        ok += valid(reply.text)
        tokens += reply.usage.completion_tokens
        walls.append(seconds)
        if reply.usage.completion_tokens:
            rates.append(reply.usage.completion_tokens / seconds)
    return {
        "valid_share": ok / len(PEOPLE),
        "tokens_per_s": statistics.median(rates) if rates else 0.0,
        "seconds_per_reply": statistics.median(walls),
        "tokens": tokens,
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Chat templates and structured output ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        "",
        "## 1. First read of the chat template and BOS/EOS strings (default model), ms",
        "",
        "| reader | ms, median (min–max) |",
        "|---|---:|",
    ]
    for reader, stats in results["template_read"].items():
        shown = fmt(stats, 1) if "median" in stats else stats["error"]
        label = "LocalLLM (header only)" if reader == "jazzmine" else "`gguf` package GGUFReader"
        lines.append(f"| {label} | {shown} |")
    lines += [
        "",
        "## 2. Twenty extraction prompts (temperature 0, up to 48 tokens)",
        "",
        "Per call, each reply's wall time includes loading the model (about 0.7 s).",
        "",
        "| run | replies that parse and validate | s per reply (median) "
        "| generated tokens per s of wall time (median) | tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in results["extraction"].items():
        share = row["valid_share"] * 100
        lines.append(
            f"| {label} | {share:.0f}% | {row['seconds_per_reply']:.2f} "
            f"| {row['tokens_per_s']:.1f} | {row['tokens']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    steps = {
        "template_read": lambda: bench_template_read(args.repeat),
        "extraction": bench_extraction,
    }
    run_steps(results, steps)
    save("structured", results, report(results))


if __name__ == "__main__":
    main()
