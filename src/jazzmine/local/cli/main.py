"""The ``jazzmine`` command: its argument parser, dispatch to the commands, and the
small commands (setup, run, doctor, worker); the chat loop lives in ``chat``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import LLMError, LocalLLM, MessagePart, defaults
from ..setup import backends
from ..setup.run import dry_run, run_setup
from ..transports import binary as binaries
from ..transports import rpc
from ..transports.config import llama_environment
from ..transports.server.budget import loaded_models
from .chat import CHAT_KEEP_ALIVE, run_chat
from .checks import (
    NotSetUp,
    check_binary,
    check_model,
    devices_of,
    model_problem,
    require_setup,
)
from .model import add_model_options, llm_from_args
from .models import add_model_commands
from .reply import print_reply


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except NotSetUp as problem:
        print(f"jazzmine: {problem}", file=sys.stderr)
        return 1
    except (LLMError, OSError, ValueError) as error:
        print(f"jazzmine: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jazzmine", description="Run a local language model.")
    commands = parser.add_subparsers(dest="command", required=True)

    setup = commands.add_parser("setup", help="build llama.cpp and install the default model")
    setup.add_argument(
        "--backend",
        choices=backends.CHOICES,
        default="auto",
        help="the llama.cpp backend (auto: CUDA with nvcc and a driver, Metal on Apple "
        "silicon, else the CPU; the CPU build stays the fallback)",
    )
    setup.add_argument(
        "--dry-run", action="store_true", help="print the backend and cmake flags; build nothing"
    )
    setup.set_defaults(handler=_setup)

    run = commands.add_parser("run", help="stream one reply to the terminal")
    run.add_argument("prompt")
    run.add_argument("--system", help="a system message before the prompt")
    add_model_options(run)
    run.set_defaults(handler=_run)

    chat = commands.add_parser(
        "chat",
        help="an interactive chat that keeps the history",
        description="Chat with the model. Ctrl-C stops a reply; Ctrl-D (or /exit) ends.",
    )
    chat.add_argument("--system", help="a system message for the whole chat")
    chat.add_argument(
        "--keep-alive",
        help="keep the model loaded this long when idle, e.g. 30s, 5m (0: a process per turn; "
        f"default: {CHAT_KEEP_ALIVE} when llama-server is beside the binary, else 0)",
    )
    add_model_options(chat)
    chat.set_defaults(handler=run_chat)

    worker = commands.add_parser("worker", help="run a llama.cpp RPC worker in the foreground")
    worker.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    worker.add_argument("--port", type=int, default=rpc.DEFAULT_PORT)
    worker.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    worker.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep received weights in a local file cache (default: on)",
    )
    worker.add_argument("--binary", help="the worker binary (default: the embedded build)")
    worker.set_defaults(handler=_worker)

    add_model_commands(commands)  # pull, models

    doctor = commands.add_parser("doctor", help="check the binary, the model and a generation")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument("--model", help="path to a GGUF model")
    doctor.add_argument("--binary", help="path to the model binary")
    doctor.add_argument("--rpc", help="RPC workers to check, host:port,... ($JAZZMINE_RPC_SERVERS)")
    doctor.set_defaults(handler=_doctor)
    return parser


# ---------- commands ----------
def _setup(args: argparse.Namespace) -> int:
    show = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.dry_run:
            dry_run(show, args.backend)
            return 0
        result = run_setup(show, args.backend)
    except RuntimeError as error:
        print(f"jazzmine: setup failed: {error}", file=sys.stderr)
        return 1
    print(f"binaries: {result.bin_dir}")
    print(f"model:    {result.model_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    check_model(args.model)
    require_setup(args.binary, args.model)
    check_binary(args.binary)
    messages = [MessagePart("system", args.system)] if args.system else []
    messages.append(MessagePart("user", args.prompt))
    with llm_from_args(args) as llm:
        _pieces, failure = print_reply(llm.stream, messages)
    if isinstance(failure, KeyboardInterrupt):
        return 130
    if failure is not None:
        print(f"jazzmine: {failure}", file=sys.stderr)
        return 1
    return 0


def _doctor(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"binary": None, "model": None, "ok": False}
    unusable = model_problem(args.model)  # the caller's argument first, then the machine
    if unusable is not None:
        report.update(model=args.model, error=unusable)
        _print_report(report, args.json)
        return 1
    try:
        require_setup(args.binary, args.model)
    except NotSetUp as problem:
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "setup_needed": True,
                        "error": str(problem),
                        "binary": args.binary or str(defaults.default_binary_path()),
                        "model": args.model or str(defaults.default_model_path()),
                    },
                    indent=2,
                )
            )
        raise
    llm = LocalLLM(binary_path=args.binary, model=args.model, max_tokens=1, timeout=120)
    report["binary"] = llm.binary_path
    report["binary_exists"] = os.path.exists(llm.binary_path)
    try:
        info = binaries.probe(llm.binary_path)
        report["binary_kind"] = info.kind.value
        report["binary_version"] = binaries.version_of(llm.binary_path)
        reply = llm.generate([MessagePart("user", "Hello")])
        report["model"] = llm.model_path
        report["generation"] = {"text": reply.text, "latency_ms": reply.latency_ms}
        report["ok"] = True
    except (LLMError, OSError) as error:
        report["model"] = llm.model_path
        report["error"] = f"{type(error).__name__}: {error}"
    report.update(devices_of(llm.binary_path))
    report["server"] = _check_server(args)
    report["model_budget"] = loaded_models()  # what is loaded now, what was evicted
    workers = rpc.parse_servers(args.rpc or os.environ.get("JAZZMINE_RPC_SERVERS") or None)
    report["workers"] = [
        {"address": address, "answers": rpc.answers(address)} for address in workers
    ]
    _print_report(report, args.json)
    return 0 if report["ok"] else 1


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")


def worker_banner(host: str, port: int) -> list[str]:
    """What `jazzmine worker` prints before it starts serving."""
    address = rpc.join_address(host, port)
    lines = [
        f"jazzmine worker: serving on {address}",
        f"clients: LocalLLM(..., rpc_servers=[{address!r}]) or JAZZMINE_RPC_SERVERS={address}",
    ]
    if not rpc.is_loopback(host):
        lines.append(
            "WARNING: the llama.cpp RPC protocol has no authentication and no encryption; "
            "this worker must only be reachable from a trusted network."
        )
    return lines


def _worker(args: argparse.Namespace) -> int:
    require_setup(args.binary, None, needs_model=False)  # weights come from the clients
    binary = args.binary or rpc.find_worker(str(defaults.default_binary_path()))
    for line in worker_banner(args.host, args.port):
        print(line, flush=True)
    # The worker replaces this process: signals reach it directly, nothing is left between.
    argv = rpc.worker_argv(binary, args.host, args.port, args.threads, args.cache)
    os.execve(binary, argv, llama_environment(None))
    return 0  # not reached


def _check_server(args: argparse.Namespace) -> dict[str, Any]:
    """Warm mode: is there a llama-server, and does it start and answer?"""
    try:
        warm = LocalLLM(binary_path=args.binary, model=args.model, keep_alive=-1, max_tokens=1)
    except (OSError, ValueError) as error:
        return {"found": False, "starts": False, "error": str(error)}
    try:
        return {"found": True, "starts": warm.health_check()}
    finally:
        warm.close()


if __name__ == "__main__":
    raise SystemExit(main())
