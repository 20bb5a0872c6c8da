"""`jazzmine chat`: the interactive loop. It reads lines (with readline at a terminal),
keeps the history turn to turn, and lets Ctrl-C stop a reply or drop a typed line.

A chat longer than the model's context goes on: its LocalLLM leaves the oldest turns out
of what is sent (``context_overflow="drop_oldest"``) once the model refused them, and they
stay left out from then on; the whole history stays in memory and on the screen."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import LocalLLM, MessagePart, defaults
from ..stream import ResponseStream
from .checks import check_binary, check_model, require_setup
from .model import llm_from_args
from .reply import print_reply

USER_PROMPT = "you> "
MODEL_PROMPT = "model> "
# Warm mode for a chat unless told otherwise: a fresh process per turn would reload the
# model and re-read the whole history every time.
CHAT_KEEP_ALIVE = "5m"
CTRL_C_POLL_SECONDS = 0.2


def run_chat(args: argparse.Namespace) -> int:
    check_model(args.model)
    require_setup(args.binary, args.model)
    check_binary(args.binary)
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_line_editing()
    history = Conversation([MessagePart("system", args.system)] if args.system else [])
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
            _chat_turn(llm, history, line, interactive)
    return 0


@dataclass
class Conversation:
    """The whole history, and how many of its oldest turns no longer fit the context."""

    system: list[MessagePart]
    turns: list[MessagePart] = field(default_factory=list)
    # Messages of ``turns`` left out of what is sent: whole turns, the oldest.
    left_out: int = 0

    def to_send(self, line: str) -> list[MessagePart]:
        return [*self.system, *self.turns[self.left_out :], MessagePart("user", line)]

    def add(self, line: str, reply: str, sent: int) -> None:
        """The turn, and what its successful call had to leave out (``sent`` messages
        of the turn's own list were sent)."""
        asked = len(self.system) + len(self.turns) - self.left_out + 1
        self.left_out += asked - sent
        self.turns += [MessagePart("user", line), MessagePart("assistant", reply)]


def _chat_turn(llm: LocalLLM, history: Conversation, line: str, interactive: bool) -> None:
    """One turn, added to the history unless it failed."""
    streams: list[ResponseStream] = []

    def stream_of(messages: list[MessagePart]) -> Iterator[str]:
        streams.append(llm.stream(messages))
        return streams[-1]

    to_send = history.to_send(line)
    pieces, failure = print_reply(stream_of, to_send, MODEL_PROMPT if interactive else "")
    if isinstance(failure, KeyboardInterrupt) and not pieces:
        # Stopped before any text, the turn is dropped whole, so roles keep alternating
        # as chat templates require.
        return
    if failure is not None and not isinstance(failure, KeyboardInterrupt):
        # A failed turn is dropped whole (its message too): a user message without a
        # reply would put two user turns in a row. With line editing, Up brings it back.
        print(f"jazzmine: {failure}", file=sys.stderr)
        return
    # A reply stopped by Ctrl-C keeps the part shown: the next message may well be about
    # it ("shorter, please").
    before = history.left_out
    history.add(line, "".join(pieces), len(to_send) - streams[0].messages_left_out)
    if history.left_out > before:
        print(
            f"jazzmine: the conversation is longer than the model's context; its oldest "
            f"{history.left_out} messages are left out of what the model sees",
            file=sys.stderr,
        )


def _chat_llm(args: argparse.Namespace) -> LocalLLM:
    chosen = args.keep_alive or os.environ.get("JAZZMINE_KEEP_ALIVE")
    try:
        # The history is longer than the context: leave out its oldest turns and go on.
        return llm_from_args(
            args, keep_alive=chosen or CHAT_KEEP_ALIVE, context_overflow="drop_oldest"
        )
    except FileNotFoundError:
        # Warm mode needs llama-server beside the binary (the embedded build has one).
        binary = args.binary or str(defaults.default_binary_path())
        if chosen:
            raise FileNotFoundError(
                f"--keep-alive needs llama-server beside {binary}, and there is none "
                "(--keep-alive 0 runs a process per turn)"
            ) from None
        return llm_from_args(args, keep_alive=0, context_overflow="drop_oldest")


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
