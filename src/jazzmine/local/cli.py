"""The ``jazzmine`` command: a thin shell over the library, for a person at a terminal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import LLMError, LocalLLM, MessagePart, defaults, rpc
from . import binary as binaries
from .binary import BinaryKind, check_executable, probe
from .config import llama_environment
from .setup import run_setup

USER_PROMPT = "you> "
MODEL_PROMPT = "model> "
# Warm mode for a chat unless told otherwise: a fresh process per turn would reload the
# model and re-read the whole history every time.
CHAT_KEEP_ALIVE = "5m"
CTRL_C_POLL_SECONDS = 0.2


class NotSetUp(Exception):
    """The build or the default model is missing: the one fix is `jazzmine setup`."""


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
    setup.set_defaults(handler=_setup)

    run = commands.add_parser("run", help="stream one reply to the terminal")
    run.add_argument("prompt")
    run.add_argument("--system", help="a system message before the prompt")
    _model_options(run)
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
    _model_options(chat)
    chat.set_defaults(handler=_chat)

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

    doctor = commands.add_parser("doctor", help="check the binary, the model and a generation")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument("--model", help="path to a GGUF model")
    doctor.add_argument("--binary", help="path to the model binary")
    doctor.add_argument("--rpc", help="RPC workers to check, host:port,... ($JAZZMINE_RPC_SERVERS)")
    doctor.set_defaults(handler=_doctor)
    return parser


def _model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model", help="path to a GGUF model (default: the one `jazzmine setup` installed)"
    )
    command.add_argument(
        "--binary",
        help="path to the model binary (default: the llama.cpp `jazzmine setup` built; "
        "$JAZZMINE_LLAMA_BIN)",
    )
    command.add_argument("--max-tokens", type=int, default=256)
    command.add_argument("--temperature", type=float, default=0.7)
    command.add_argument("--seed", type=int)
    command.add_argument(
        "--n-ctx", type=int, help="context size in tokens (default: sized to the conversation)"
    )


# ---------- is jazzmine set up? ----------
def _require_setup(binary: str | None, model: str | None, *, needs_model: bool = True) -> None:
    """Raise NotSetUp when what the command would use from `jazzmine setup` is missing.

    What the user named (``--binary``, ``--model`` or their environment variables) is
    theirs: a missing one is reported by the library under its own name, never as set-up.
    """
    built = binary is None and not os.environ.get("JAZZMINE_LLAMA_BIN")
    if built and not defaults.default_binary_path().exists():
        raise NotSetUp(
            "not set up: run `jazzmine setup` first (it builds llama.cpp once; "
            f"there is no build in {defaults.build_bin_dir()})"
        )
    if not needs_model or model is not None or os.environ.get("JAZZMINE_MODEL"):
        return
    chosen = binary or os.environ.get("JAZZMINE_LLAMA_BIN")
    if chosen is not None and not _needs_a_model(chosen):
        return
    path = defaults.default_model_path()
    if not path.exists():
        raise NotSetUp(
            "not set up: run `jazzmine setup` first, or pass --model FILE.gguf "
            f"(there is no default model at {path})"
        )


def _needs_a_model(binary: str) -> bool:
    """Only llama.cpp binaries are given a model; a `-p PROMPT` program brings its own."""
    try:
        return probe(os.path.expanduser(binary)).kind is not BinaryKind.PROMPT_FLAG
    except OSError:
        return False  # a missing binary is the error to report, not the model


def _check_binary(binary: str | None) -> None:
    """Fail before the first turn when the binary the user named cannot run."""
    if binary is not None:
        check_executable(os.path.expanduser(binary))


# ---------- commands ----------
def _llm(args: argparse.Namespace, keep_alive: str | int | None = None) -> LocalLLM:
    return LocalLLM(
        binary_path=args.binary,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        n_ctx=args.n_ctx,
        keep_alive=keep_alive,
    )


def _setup(args: argparse.Namespace) -> int:
    try:
        result = run_setup(lambda line: print(line, flush=True))
    except RuntimeError as error:
        print(f"jazzmine: setup failed: {error}", file=sys.stderr)
        return 1
    print(f"binaries: {result.bin_dir}")
    print(f"model:    {result.model_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    _require_setup(args.binary, args.model)
    _check_binary(args.binary)
    messages = [MessagePart("system", args.system)] if args.system else []
    messages.append(MessagePart("user", args.prompt))
    with _llm(args) as llm:
        _pieces, failure = _print_reply(llm.stream, messages)
    if isinstance(failure, KeyboardInterrupt):
        return 130
    if failure is not None:
        print(f"jazzmine: {failure}", file=sys.stderr)
        return 1
    return 0


def _print_reply(
    stream_of: Callable[[list[MessagePart]], Iterator[str]],
    messages: list[MessagePart],
    prefix: str = "",
) -> tuple[list[str], BaseException | None]:
    """Stream a reply to stdout as it arrives; return its pieces and what stopped it.

    Ctrl-C and a failed call end the reply, not the program. The stream is closed on
    every path, which ends the model process before this returns.
    """
    sys.stdout.write(prefix)
    sys.stdout.flush()
    pieces: list[str] = []
    stream: Iterator[str] | None = None
    failure: BaseException | None = None
    try:
        stream = stream_of(messages)
        for piece in stream:
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt as interrupt:
        failure = interrupt
    except (LLMError, OSError) as error:
        failure = error
    finally:
        if stream is not None:
            _close_uninterrupted(stream)
    if prefix or pieces or failure is None:
        # One line per reply (even an empty one); an error starts on a line of its own.
        sys.stdout.write("\n")
        sys.stdout.flush()
    if isinstance(failure, KeyboardInterrupt):
        print("(stopped)", file=sys.stderr)
    return pieces, failure


def _close_uninterrupted(stream: Iterator[str]) -> None:
    """Close the stream (it reaps the model process) with Ctrl-C held off meanwhile: a
    second Ctrl-C must not cut the clean-up short and leave the process behind."""
    close = getattr(stream, "close", None)
    if close is None:
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        close()
    finally:
        signal.signal(signal.SIGINT, previous)


def _chat(args: argparse.Namespace) -> int:
    _require_setup(args.binary, args.model)
    _check_binary(args.binary)
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_line_editing()
    history = [MessagePart("system", args.system)] if args.system else []
    llm = _chat_llm(args)
    with llm:
        if llm.keep_alive is not None:
            # Load the model now, not in the middle of the first turn: a person sees why
            # they wait, and Ctrl-C while it loads simply ends the program.
            if interactive:
                print("Loading the model...", file=sys.stderr, flush=True)
            llm.health_check()  # a failure here is reported by the first turn
        if interactive:
            print("Ctrl-C stops a reply, Ctrl-D (or /exit) ends the chat.", file=sys.stderr)
        while True:
            try:
                line = _read_line(interactive)
            except KeyboardInterrupt:
                # As in Python's REPL: drop what was being typed and ask again.
                sys.stdout.write("\n")
                continue
            if line is None:
                if interactive:
                    sys.stdout.write("\n")  # the shell's prompt starts on a line of its own
                break
            if line.strip() in ("/exit", "/quit"):
                break
            if not line.strip():
                continue
            history = _chat_turn(llm, history, line, interactive)
    return 0


def _chat_turn(
    llm: LocalLLM, history: list[MessagePart], line: str, interactive: bool
) -> list[MessagePart]:
    """One turn; returns the history the next turn builds on."""
    asked = [*history, MessagePart("user", line)]
    pieces, failure = _print_reply(llm.stream, asked, MODEL_PROMPT if interactive else "")
    if isinstance(failure, KeyboardInterrupt):
        # The part shown stays in the history: the next message may well be about it
        # ("shorter, please"). Stopped before any text, the turn is dropped whole, so
        # roles keep alternating as chat templates require.
        return [*asked, MessagePart("assistant", "".join(pieces))] if pieces else history
    if failure is not None:
        # A failed turn is dropped whole (its message too): a user message without a
        # reply would put two user turns in a row. With line editing, Up brings it back.
        print(f"jazzmine: {failure}", file=sys.stderr)
        return history
    return [*asked, MessagePart("assistant", "".join(pieces))]


def _chat_llm(args: argparse.Namespace) -> LocalLLM:
    chosen = args.keep_alive or os.environ.get("JAZZMINE_KEEP_ALIVE")
    try:
        return _llm(args, keep_alive=chosen or CHAT_KEEP_ALIVE)
    except FileNotFoundError:
        # Warm mode needs llama-server beside the binary (the embedded build has one).
        binary = args.binary or str(defaults.default_binary_path())
        if chosen:
            raise FileNotFoundError(
                f"--keep-alive needs llama-server beside {binary}, and there is none "
                "(--keep-alive 0 runs a process per turn)"
            ) from None
        return _llm(args, keep_alive=0)


def _enable_line_editing() -> None:
    """Line editing for a terminal, which also lifts the kernel's 4,095-byte limit on a
    typed line: readline reads key by key instead of waiting for the terminal's line."""
    try:
        import readline
    except ImportError:  # Python built without it: plain input() still works
        return
    # Tab inserts a tab (pasted code keeps its indentation) instead of completing.
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I ed-insert")
    else:
        readline.parse_and_bind("tab: self-insert")
    # The history stays in memory: a chat is private, nothing is written to disk.


def _input_noticing_ctrl_c(prompt: str) -> str:
    """``input()``, with a Ctrl-C at the prompt always noticed.

    CPython's readline loop looks at signals only when its ``select()`` is interrupted:
    a Ctrl-C that lands while readline is handling a key (outside ``select()``) would be
    noticed only at the next Ctrl-C. A light timer interrupts ``select()`` five times a
    second, so such a Ctrl-C still ends the line within a moment.
    """
    previous = signal.signal(signal.SIGALRM, _wake_up)
    signal.setitimer(signal.ITIMER_REAL, CTRL_C_POLL_SECONDS, CTRL_C_POLL_SECONDS)
    try:
        return input(prompt)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _wake_up(signum: int, frame: object) -> None:
    """Nothing to do: being called is what makes Python look at pending signals."""


def _read_line(interactive: bool) -> str | None:
    """The next line the user typed, or None at the end of input (Ctrl-D)."""
    if interactive:
        try:
            return _input_noticing_ctrl_c(USER_PROMPT)
        except EOFError:
            return None
    # Not a terminal: lines of any length straight from stdin.
    text = sys.stdin.readline()
    if not text:
        return None
    return text.removesuffix("\n").removesuffix("\r")


def _doctor(args: argparse.Namespace) -> int:
    try:
        _require_setup(args.binary, args.model)
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
    report: dict[str, Any] = {"binary": None, "model": None, "ok": False}
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
    report["server"] = _check_server(args)
    workers = rpc.parse_servers(args.rpc or os.environ.get("JAZZMINE_RPC_SERVERS") or None)
    report["workers"] = [
        {"address": address, "answers": rpc.answers(address)} for address in workers
    ]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")
    return 0 if report["ok"] else 1


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
    _require_setup(args.binary, None, needs_model=False)  # weights come from the clients
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
