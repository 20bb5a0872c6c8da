"""Tool calls: LocalLLM against llama-server's own /v1/chat/completions, in one run.

    nice -n 10 .venv/bin/python bench/tools.py [--quick] [--families generic,hermes]
        [--paired N] [--prompts N] [--max-tokens N] [--out NAME]
    .venv/bin/python bench/tools.py --merge NAME NAME   (runs of one family each -> --out)

Twenty fixed prompts that each clearly call for one of four tools (weather, currency
conversion, web search, timer; schemas with required fields, enums, integers and a
bounded integer), on the default model, for two tool-call families:

* generic: the model's own chat template (ChatML without tools), which LocalLLM answers
  with its JSON envelope;
* hermes: the Qwen 2.5 fixture template (ChatML that prints the tools, ``<tool_call>``);
* qwen3-coder, glm, lfm2.5 (``--families``): llama.cpp's own Qwen3-Coder, GLM-4.6 and
  LFM2.5 templates from the cached sdist, formats LocalLLM learns from the template
  (XML parameters, arg_key/arg_value, Python calls), beside llama-server's own parsing.

Three sides per family, same model, template, tools and sampling (temperature 0, one
seed, the same max_tokens and context, one call per reply: ``parallel_tool_calls`` off
on every side), interleaved prompt by prompt in an order that rotates:

1. LocalLLM, a process per call;
2. LocalLLM warm (keep_alive="5m");
3. llama-server started here (``--jinja --chat-template-file``, loopback only), sent
   {"messages", "tools", "tool_choice"} on /v1/chat/completions. Its calls' arguments
   are checked here with ``tools.validate.validate``.

For tool_choice "auto" and "required", the share of replies that (a) contain a call,
(b) parse, (c) validate against the tool's schema, and (d) call the tool the prompt
asks for. On both LocalLLM sides each prompt is also sent with tool_choice="none" (the
tools still in the prompt, no grammar, same max_tokens), next to the "required" call:
median ms of each and the median of the pair-by-pair ratios. A few prompts also go to
llama-server with each tool_choice ("none" and a named function too), to record what it
does with each. Writes bench/results/tools.md and tools.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import RESULTS, default_model, machine, machine_line, run_steps, save

from jazzmine.local import LLMError, LocalLLM, MessagePart, defaults
from jazzmine.local.errors import LLMToolCallError
from jazzmine.local.tools.validate import validate
from jazzmine.local.transports.config import SPIN_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
HERMES_TEMPLATE = ROOT / "tests" / "fixtures" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
MAX_TOKENS = 64
N_CTX = 2048
SEED = 1
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD"]


def tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


TOOLS = [
    tool(
        "get_weather",
        "Current weather in a city.",
        {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        ["city"],
    ),
    tool(
        "convert_currency",
        "Convert an amount of money from one currency to another.",
        {
            "amount": {"type": "number", "minimum": 0},
            "from": {"type": "string", "enum": CURRENCIES},
            "to": {"type": "string", "enum": CURRENCIES},
        },
        ["amount", "from", "to"],
    ),
    tool(
        "search_web",
        "Search the web and return the top results.",
        {
            "query": {"type": "string"},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        ["query"],
    ),
    tool(
        "set_timer",
        "Start a countdown timer.",
        {
            "minutes": {"type": "integer", "minimum": 1, "maximum": 180},
            "label": {"type": "string"},
        },
        ["minutes"],
    ),
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
# (prompt, the tool it calls for)
PROMPTS = [
    ("What's the weather in Paris right now?", "get_weather"),
    ("Is it raining in London? Use the weather tool.", "get_weather"),
    ("Tell me the temperature in Tokyo in fahrenheit.", "get_weather"),
    ("Check the weather for Berlin in celsius.", "get_weather"),
    ("How cold is it in Oslo today?", "get_weather"),
    ("Convert 100 USD to EUR.", "convert_currency"),
    ("How many yen is 50 dollars? Use JPY and USD.", "convert_currency"),
    ("Change 250 GBP into CHF.", "convert_currency"),
    ("I have 75 EUR. How much is that in CAD?", "convert_currency"),
    ("Convert 1200 JPY to USD please.", "convert_currency"),
    ("Search the web for the latest Python release.", "search_web"),
    ("Find news about the Mars rover.", "search_web"),
    ("Look up the best pizza recipes online, top 3 results.", "search_web"),
    ("Search for the population of Canada.", "search_web"),
    ("Google who won the 2022 World Cup.", "search_web"),
    ("Set a timer for 10 minutes.", "set_timer"),
    ("Start a 25 minute timer labelled focus.", "set_timer"),
    ("Remind me in 5 minutes with a timer for the tea.", "set_timer"),
    ("Set a timer for one hour.", "set_timer"),
    ("Start a countdown of 3 minutes for the eggs.", "set_timer"),
]
CHOICES = ("auto", "required")


def spread(items: list[Any], count: int) -> list[Any]:
    """``count`` of ``items`` taken evenly through the list (every tool gets prompts)."""
    return [items[index * len(items) // count] for index in range(count)]


NAMED = {"type": "function", "function": {"name": "get_weather"}}
# Call text left in a reply's content by a side that did not parse it.
RAW_CALL = re.compile(r'<tool_call>|"tool_calls?"\s*:|"name"\s*:\s*"(' + "|".join(SCHEMAS) + ')"')


@dataclass
class Outcome:
    """One reply, as the caller sees it."""

    ms: float
    has_call: bool = False
    parsed: bool = False
    valid: bool = False
    right_tool: bool = False
    tokens: int | None = None
    finish: str | None = None
    detail: str = ""

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def checked(calls: list[tuple[str, Any]], expected: str) -> dict[str, bool]:
    """``calls`` as (name, arguments: a dict, or a string the side left unparsed)."""
    parsed = all(isinstance(arguments, dict) for _, arguments in calls)
    valid = parsed and all(
        name in SCHEMAS and not validate(arguments, SCHEMAS[name]) for name, arguments in calls
    )
    return {"parsed": parsed, "valid": valid, "right_tool": valid and calls[0][0] == expected}


# --- LocalLLM -------------------------------------------------------------------------


def local_call(llm: LocalLLM, prompt: str, expected: str, choice: Any) -> Outcome:
    started = time.perf_counter()
    try:
        reply = llm.generate([MessagePart("user", prompt)], tool_choice=choice)
    except LLMToolCallError as error:
        ms = (time.perf_counter() - started) * 1000
        message = str(error)
        # The grammar held the shape but the model broke a bound only the validator checks
        # (or named a tool that does not exist): the call parsed but does not validate.
        parsed = any(
            text in message
            for text in ("do not match its schema", "not one of the tools", "tool_choice names")
        )
        no_call = "reply has none" in message
        return Outcome(ms, has_call=not no_call, parsed=parsed, detail=message[:300])
    except LLMError as error:
        return Outcome((time.perf_counter() - started) * 1000, detail=f"error: {error}"[:300])
    ms = (time.perf_counter() - started) * 1000
    outcome = Outcome(ms, tokens=reply.usage.completion_tokens, finish=reply.finish_reason)
    if reply.tool_calls:
        # Checked again here, with the same validator the server side gets.
        calls = [(call.name, call.arguments) for call in reply.tool_calls]
        outcome.has_call = True
        outcome.__dict__.update(checked(calls, expected))
        outcome.detail = json.dumps([[n, a] for n, a in calls])[:300]
    else:
        outcome.has_call = bool(RAW_CALL.search(reply.text))
        outcome.detail = reply.text[:300]
    return outcome


def local_llm(template: Path | None, keep_alive: str | None) -> LocalLLM:
    return LocalLLM(
        keep_alive=keep_alive,
        chat_template=str(template) if template else None,
        max_tokens=MAX_TOKENS,
        seed=SEED,
        n_ctx=N_CTX,
        tools=TOOLS,
        parallel_tool_calls=False,
    )


# --- llama-server's own /v1/chat/completions ------------------------------------------


class Server:
    """The pinned llama-server on a loopback port, with the same model and template."""

    def __init__(self, model: str, template: Path | None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        argv = [
            str(defaults.build_bin_dir() / "llama-server"),
            *("-m", model, "--jinja", "--host", "127.0.0.1", "--port", str(self.port)),
            *("-c", str(N_CTX), "-np", "1", "--offline", "--no-webui"),
        ]
        if template is not None:
            argv += ["--chat-template-file", str(template)]
        # The same short OpenMP spin LocalLLM gives its children: on a shared machine the
        # default spin slowed this server about 10x, which would only stretch the run.
        env = {**os.environ, **SPIN_DEFAULTS}
        self.log = open(f"/tmp/bench-tools-server-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health") as answer:
                    if json.load(answer).get("status") == "ok":
                        return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError("llama-server did not become ready")

    def chat(self, prompt: str, choice: Any) -> tuple[int, dict[str, Any]]:
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "tools": TOOLS,
            "tool_choice": choice,
            "parallel_tool_calls": False,
            "temperature": 0,
            "seed": SEED,
            "max_tokens": MAX_TOKENS,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, {"error": error.read().decode(errors="replace")[:300]}

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        # Kept only when the server failed to start (the error names it).
        Path(self.log.name).unlink(missing_ok=True)


def server_call(server: Server, prompt: str, expected: str, choice: Any) -> Outcome:
    started = time.perf_counter()
    status, answer = server.chat(prompt, choice)
    ms = (time.perf_counter() - started) * 1000
    if status != 200:
        return Outcome(ms, detail=f"HTTP {status}: {answer.get('error', '')}"[:300])
    first = answer["choices"][0]
    message = first["message"]
    outcome = Outcome(
        ms, tokens=answer.get("usage", {}).get("completion_tokens"), finish=first["finish_reason"]
    )
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        arguments: Any = function.get("arguments")
        with contextlib.suppress(TypeError, ValueError):
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        calls.append((function.get("name"), arguments))
    content = message.get("content") or ""
    if calls:
        outcome.has_call = True
        outcome.__dict__.update(checked(calls, expected))
        outcome.detail = json.dumps([[n, a] for n, a in calls])[:300]
    else:
        # A call the server did not recognise stays in the content as text: it contains
        # a call, but the client gets nothing it can use.
        outcome.has_call = bool(RAW_CALL.search(content))
        outcome.detail = content[:300]
    return outcome


# --- the run --------------------------------------------------------------------------

SIDES = ("LocalLLM per call", "LocalLLM warm", "llama-server /v1/chat/completions")


def sdist_template(name: str) -> Path:
    """One of llama.cpp's own templates, from the cached sdist (tests/helpers)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.sdist_templates import template_dir

    return template_dir() / name


# Formats learnt from the template (tools/formats): the sdist's templates, on the
# default model; llama-server reads the same replies with its own autoparser.
LEARNT = {
    "qwen3-coder": "Qwen3-Coder.jinja",  # <function=N><parameter=k>v</parameter>
    "glm": "GLM-4.6.jinja",  # <tool_call>N<arg_key>k</arg_key><arg_value>v</arg_value>
    "lfm2.5": "LFM2.5-8B-A1B.jinja",  # <|tool_call_start|>[N(k='v')]<|tool_call_end|>
}
FAMILY_TEMPLATES: dict[str, Path | None] = {"generic": None, "hermes": HERMES_TEMPLATE}
FAMILY_TEMPLATES |= {family: sdist_template(name) for family, name in LEARNT.items()}


@contextlib.contextmanager
def sides_for(model: str, template: Path | None) -> Iterator[dict[str, Callable[..., Outcome]]]:
    per_call = local_llm(template, None)
    warm = local_llm(template, "5m")
    server = Server(model, template)
    try:
        # Loaded before the clock (warm) and the page cache filled (per call).
        for llm in (per_call, warm):
            llm.generate([MessagePart("user", "hello")], max_tokens=1, tool_choice="none")
        server.chat("hello", "none")
        yield {
            SIDES[0]: lambda p, e, c: local_call(per_call, p, e, c),
            SIDES[1]: lambda p, e, c: local_call(warm, p, e, c),
            SIDES[2]: lambda p, e, c: server_call(server, p, e, c),
        }
    finally:
        for llm in (per_call, warm):
            llm.close()
        server.close()


def bench_replies(
    families: list[str], prompts: int, paired: int, probes: int, progress: Callable[..., None]
) -> dict[str, Any]:
    """``paired``: on that many first prompts the LocalLLM sides also get "none";
    ``probes``: on that many, llama-server also gets "none" and a named function."""
    model = default_model()
    records: list[dict[str, Any]] = []
    probe_records: list[dict[str, Any]] = []

    def results(done: int) -> dict[str, Any]:
        return {
            "prompts_done": done,
            "shares": shares(records),
            "timing": timing(records),
            "server_probe": probe_records,
            "records": records,
        }

    with contextlib.ExitStack() as stack:
        runs = {f: stack.enter_context(sides_for(model, FAMILY_TEMPLATES[f])) for f in families}
        for index, (prompt, expected) in enumerate(spread(PROMPTS, prompts)):
            print(f"bench: prompt {index + 1}/{prompts}", flush=True, file=sys.stderr)
            for family, calls in runs.items():
                for side in SIDES[index % 3 :] + SIDES[: index % 3]:
                    choices: list[Any] = list(CHOICES)
                    if side != SIDES[2] and index < paired:
                        choices.append("none")
                    if index % 2:
                        choices.reverse()
                    for choice in choices:
                        outcome = calls[side](prompt, expected, choice)
                        records.append(
                            {"family": family, "side": side, "prompt": index, "choice": choice}
                            | outcome.row()
                        )
                if index < probes:
                    for choice in ("none", NAMED):
                        outcome = calls[SIDES[2]](prompt, expected, choice)
                        label = choice if isinstance(choice, str) else "named (get_weather)"
                        probe_records.append(
                            {"family": family, "prompt": index, "choice": label} | outcome.row()
                        )
            # Kept after every prompt: a run cut short still leaves its figures.
            progress(results(index + 1))
    return results(prompts)


def shares(records: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for record in records:
        if record["choice"] not in CHOICES:
            continue
        key = f"{record['family']} | {record['choice']} | {record['side']}"
        row = table.setdefault(key, {"n": 0, "has_call": 0, "parsed": 0, "valid": 0})
        row.setdefault("right_tool", 0)
        row["n"] += 1
        for field in ("has_call", "parsed", "valid", "right_tool"):
            row[field] += bool(record[field])
    return table


def timing(records: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    pairs: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for record in records:
        if record["side"] == SIDES[2] or record["choice"] == "auto":
            continue
        pairs.setdefault((record["family"], record["side"], record["prompt"]), {})[
            record["choice"]
        ] = record
    for (family, side, _), pair in pairs.items():
        if len(pair) < 2:
            continue
        row = table.setdefault(f"{family} | {side}", {"required": [], "none": [], "ratio": []})
        row["required"].append(pair["required"]["ms"])
        row["none"].append(pair["none"]["ms"])
        row["ratio"].append(pair["required"]["ms"] / pair["none"]["ms"])
        row.setdefault("tokens_required", []).append(pair["required"]["tokens"])
        row.setdefault("tokens_none", []).append(pair["none"]["tokens"])
    return table


def median_of(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def report(results: dict[str, Any]) -> str:
    replies = results["replies"]
    lines = [
        f"# Tool calls: LocalLLM and llama-server ({results['machine']['date']})",
        "",
        machine_line(results["machine"]),
        "",
        f"Default model, {replies['prompts_done']} of {results['prompts']} prompts done "
        f"(run: {results.get('seconds', 0) / 60:.1f} min), each calling for one of 4 tools, "
        f"temperature 0, seed {SEED}, max_tokens {MAX_TOKENS}, n_ctx {N_CTX}, one call per "
        "reply (`parallel_tool_calls` off on every side), sides interleaved prompt by prompt. "
        "generic: the model's own ChatML template (no tools in it); hermes: the Qwen 2.5 "
        "fixture template (`<tool_call>`); qwen3-coder, glm, lfm2.5: the sdist's "
        "Qwen3-Coder, GLM-4.6 and LFM2.5 templates, whose formats LocalLLM learns by "
        "rendering them. llama-server is the pinned build with `--jinja` "
        "and the same template; its calls are validated here with `tools.validate.validate`.",
        "",
        *(
            [f"Families measured in separate runs, joined: {', '.join(results['runs'])}.", ""]
            if "runs" in results
            else []
        ),
        "## 1. Replies that contain a call, parse, validate, and call the right tool",
        "",
        "A call left as text in `content` (the side did not parse it) counts as containing "
        "a call and nothing more. A LocalLLM reply that raised `LLMToolCallError` contains a "
        "call; it parsed when only the schema check failed.",
        "",
        "| family | tool_choice | side | contain a call | parse | validate | right tool |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for key, row in replies["shares"].items():
        family, choice, side = key.split(" | ")
        n = row["n"]
        cells = " | ".join(
            f"{row[f] * 100 / n:.0f}%" for f in ("has_call", "parsed", "valid", "right_tool")
        )
        lines.append(f"| {family} | {choice} | {side} | {cells} |")
    lines += [
        "",
        '## 2. A constrained call ("required") against an unconstrained one ("none")',
        "",
        'Same prompt, same max_tokens, the tools in the prompt both times; "none" has no '
        "grammar and usually runs to max_tokens. Per call, each reply includes loading "
        "the model. Ratio: median of the prompt-by-prompt ratios.",
        "",
        '| family | side | "required", ms | "none", ms | required / none '
        "| tokens, required | tokens, none |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in replies["timing"].items():
        family, side = key.split(" | ")
        tokens = [median_of(row["tokens_required"]), median_of(row["tokens_none"])]
        shown = " | ".join("–" if t is None else f"{t:.0f}" for t in tokens)
        lines.append(
            f"| {family} | {side} | {statistics.median(row['required']):.0f} "
            f"| {statistics.median(row['none']):.0f} | {statistics.median(row['ratio']):.2f} "
            f"| {shown} |"
        )
    lines += [
        "",
        "## 3. What llama-server returned for each tool_choice (first prompts)",
        "",
        "| family | prompt | tool_choice | finish | tool_calls | reply (start) |",
        "|---|---:|---|---|---|---|",
    ]
    probed = {(r["family"], r["prompt"]) for r in replies["server_probe"]}
    shown = [
        r
        for r in replies["records"]
        if r["side"] == SIDES[2] and (r["family"], r["prompt"]) in probed
    ] + replies["server_probe"]
    order = ["auto", "required", "none", "named (get_weather)"]
    shown.sort(key=lambda r: (r["family"], r["prompt"], order.index(r["choice"])))
    for record in shown:
        calls = "yes" if record["has_call"] and record["parsed"] else "no"
        text = record["detail"][:90].replace("|", "\\|").replace("\n", "\\n")
        lines.append(
            f"| {record['family']} | {record['prompt'] + 1} | {record['choice']} "
            f"| {record['finish']} | {calls} | `{text}` |"
        )
    return "\n".join(lines) + "\n"


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of different families as one report (each run's sides were interleaved)."""
    records = [r for run in runs for r in run["replies"]["records"]]
    probes = [r for run in runs for r in run["replies"]["server_probe"]]
    return {
        "machine": runs[0]["machine"],
        "prompts": min(run["prompts"] for run in runs),
        "families": [f for run in runs for f in run["families"]],
        "seconds": sum(run["seconds"] for run in runs),
        "runs": [run["machine"]["date"] for run in runs],
        "replies": {
            "prompts_done": min(run["replies"]["prompts_done"] for run in runs),
            "shares": shares(records),
            "timing": timing(records),
            "server_probe": probes,
            "records": records,
        },
    }


def main() -> None:
    global MAX_TOKENS
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="4 prompts, 1 probe")
    parser.add_argument("--families", default="generic,hermes")
    parser.add_argument(
        "--prompts",
        type=int,
        choices=range(1, len(PROMPTS) + 1),
        default=len(PROMPTS),
        metavar=f"1..{len(PROMPTS)}",
        help="N of the prompts, spread over the tools (each takes minutes on two cores)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        help="the reply cap on every side (the learnt XML formats need about 100 for a call)",
    )
    parser.add_argument("--out", default="tools", help="name of the files under bench/results")
    parser.add_argument(
        "--paired", type=int, default=8, help='prompts that also get "none" (timing)'
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="NAME",
        help="no run: join earlier runs' bench/results/NAME.json (one family each) into --out",
    )
    args = parser.parse_args()
    MAX_TOKENS = args.max_tokens
    if args.merge:
        merged = merge([json.loads((RESULTS / f"{name}.json").read_text()) for name in args.merge])
        save(args.out, merged, report(merged))
        return
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(FAMILY_TEMPLATES)
    if unknown:
        parser.error(f"unknown families: {', '.join(sorted(unknown))}")
    prompts, paired, probes = (4, 4, 1) if args.quick else (args.prompts, args.paired, 2)
    paired = min(paired, prompts)
    results: dict[str, Any] = {"machine": machine(), "prompts": prompts, "families": families}
    started = time.perf_counter()

    def progress(replies: dict[str, Any]) -> None:
        if not args.quick:
            # A quick run checks the script: it never replaces the full tables.
            partial = results | {"replies": replies, "seconds": time.perf_counter() - started}
            (RESULTS / f"{args.out}.json").write_text(json.dumps(partial, indent=2))
            (RESULTS / f"{args.out}.md").write_text(report(partial))

    run_steps(
        results, {"replies": lambda: bench_replies(families, prompts, paired, probes, progress)}
    )
    results["seconds"] = time.perf_counter() - started
    if args.quick:
        print(report(results))
    else:
        save(args.out, results, report(results))


if __name__ == "__main__":
    main()
