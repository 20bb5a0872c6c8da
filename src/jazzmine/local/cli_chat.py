"""`jazzmine chat`: the interactive loop. It reads lines (with readline at a terminal),
keeps the history turn to turn, and lets Ctrl-C stop a reply or drop a typed line."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import LocalLLM, MessagePart, defaults
from .cli_checks import check_binary, require_setup
from .cli_model import llm_from_args
from .cli_reply import print_reply

USER_PROMPT = "you> "
MODEL_PROMPT = "model> "
# Warm mode for a chat unless told otherwise: a fresh process per turn would reload the
# model and re-read the whole history every time.
CHAT_KEEP_ALIVE = "5m"
CTRL_C_POLL_SECONDS = 0.2


def run_chat(args: argparse.Namespace) -> int:
    require_setup(args.binary, args.model)
    check_binary(args.binary)
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
    pieces, failure = print_reply(llm.stream, asked, MODEL_PROMPT if interactive else "")
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
        return llm_from_args(args, keep_alive=chosen or CHAT_KEEP_ALIVE)
    except FileNotFoundError:
        # Warm mode needs llama-server beside the binary (the embedded build has one).
        binary = args.binary or str(defaults.default_binary_path())
        if chosen:
            raise FileNotFoundError(
                f"--keep-alive needs llama-server beside {binary}, and there is none "
                "(--keep-alive 0 runs a process per turn)"
            ) from None
        return llm_from_args(args, keep_alive=0)


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
