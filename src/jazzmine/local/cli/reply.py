"""One reply streamed to the terminal as it arrives, for `jazzmine run` and each chat
turn: Ctrl-C or a failed call ends the reply, never leaving the model process behind."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator

from .. import LLMError, MessagePart


def print_reply(
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
