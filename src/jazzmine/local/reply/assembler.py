"""Raw output in, reply pieces out: the one place that decides what the user sees.

Shared by every transport and by sync and async alike. It decodes UTF-8 without ever
splitting a character, drops what is not the reply (a banner, the echoed prompt, an
end-of-text marker, UI chrome after the reply), cuts the reply at stop sequences, strips
surrounding whitespace the same way for a stream as for a joined reply, and records why
the reply ended (what the run as a whole came to is ``outcome``). Given llama-completion's
output it gives what llama-server gives for the same tokens (a stop found as one token at
a time finds it; a limit's cut drops a stop's first half and a character's first bytes),
so both modes give one answer.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..request import OutputShape
from ..usage import CHARS_PER_TOKEN


class Phase(enum.Enum):
    """Where the assembler is in the output: chrome before the reply, the echoed prompt,
    the reply itself, and after its end (the producer may be stopped)."""

    PREAMBLE = "preamble"
    ECHO = "echo"
    BODY = "body"
    DONE = "done"


# What may come before the echoed prompt: llama.cpp prints the prompt from its tokens, and
# a tokenizer that adds a leading space prints it too. More than this is not an echo.
ECHO_LEADING_WHITESPACE = 16
# An echo not at the start is still looked for at the start of a line (after a binary's
# log line such as "loading model... done") this far into the output.
ECHO_SEARCH_CHARS = 4096


def late_echo(text: str, echo: str, room: int) -> tuple[int, bool] | None:
    """An echo of ``echo`` at the start of a line of ``text`` (not at its very start),
    beginning within ``room`` characters: (where, True) when it is whole there, (where,
    False) when what is there may still become it; None when there is none."""
    wanted = echo.lstrip()
    at = text.find("\n")
    while 0 <= at < min(len(text), room):
        start = at + 1
        if text.startswith(wanted, start):
            return start, True
        if wanted.startswith(text[start:]):
            return start, False
        at = text.find("\n", start)
    return None


def echo_length(output: str, echo: str) -> int | None:
    """How much of ``output`` is the echoed prompt: its length when the output opens with
    the echo (after a little whitespace), -1 when it does not, None while undecided."""
    body = output.lstrip()
    lead = len(output) - len(body)
    if lead > ECHO_LEADING_WHITESPACE:
        return -1
    wanted = echo.lstrip()
    if body.startswith(wanted):
        return lead + len(wanted)
    if wanted.startswith(body):
        return None
    return -1


@dataclass
class ReplyAssembler:
    shape: OutputShape
    stop_sequences: Sequence[str] = ()
    reply_text: str = ""
    raw_text: str = ""
    # "stop" when a stop sequence or an end marker was seen; None while undecided.
    finish_reason: str | None = None
    # The stop sequence (a caller's stop or a turn marker) that ended the reply, if one did.
    stopped_by: str | None = None
    # For a shape with an echo: "removed", or "not found" (the output is then kept whole).
    # An echo found after a line of the binary's own (a log line) is removed where it
    # stands; that line is kept, as the binary's output is when no echo is found.
    echo: str | None = None
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _phase: Phase = Phase.PREAMBLE
    _pending: str = ""
    _started: bool = False
    _held_bytes: bytes = b""
    # The echo is still looked for at a line start (it was not at the start).
    _late_echo: bool = False
    # After an echo cut out of the middle: the reply's leading whitespace starts here.
    _trim_from: int | None = None

    def __post_init__(self) -> None:
        self._stops = tuple(stop for stop in self.stop_sequences if stop)
        # What the binary prints around the reply, never the model: not a stop's to match.
        self._chrome = tuple(
            marker for marker in (*self.shape.end_markers, *self.shape.trailer_markers) if marker
        )
        self._markers = (*self._stops, *self._chrome)
        if self.shape.preamble_end is None:
            self._phase = Phase.ECHO if self.shape.echo else Phase.BODY

    @property
    def done(self) -> bool:
        """True once the reply is complete; the producer may be stopped."""
        return self._phase == Phase.DONE

    def feed(self, data: bytes) -> list[str]:
        """Take raw bytes; return the reply pieces they complete (possibly none)."""
        closing = self.shape.closing.encode("utf-8")
        if closing:
            # Bytes that may begin the closing wait for the next read (at most its length),
            # so a stop is never matched against it.
            data = self._held_bytes + data
            held = _overlap(data, closing)
            self._held_bytes = data[len(data) - held :]
            data = data[: len(data) - held]
        return self._feed_text(self._decoder.decode(data))

    def finish(self) -> list[str]:
        """The producer ended: release what was held back for marker matching."""
        if self._phase == Phase.DONE:
            return []
        held, self._held_bytes = self._held_bytes, b""
        closing = held == self.shape.closing.encode("utf-8") and bool(held)
        text = "" if closing else self._decoder.decode(held)
        pieces = self._feed_text(text)
        # A character whose last bytes never came was cut by the limit: it is not text
        # (llama-server never sends it either), so it is dropped, not shown as U+FFFD.
        # ``raw_text`` keeps all the output, the cut character and the closing too.
        cut = self._decoder.decode(b"", final=True)
        self.raw_text += cut + (self.shape.closing if closing else "")
        if self._phase in (Phase.PREAMBLE, Phase.ECHO):
            # The binary never printed what we waited for: what it did print is the reply,
            # still cut at stops and trailers.
            if self.shape.echo and self.echo is None:
                self.echo = "not found"
            self._phase = Phase.BODY
        pieces += self._scan_body(final=True)
        if self._phase == Phase.DONE:
            return pieces
        tail = self._pending
        if self.shape.marks_every_end:
            # A limit cut the reply: what could begin a stop is dropped, as llama-server
            # drops it, so both modes give one answer.
            tail = tail[: len(tail) - _longest_partial(tail, self._stops)]
        self._pending = ""
        self._phase = Phase.DONE
        return [*pieces, *self._emit(self._trim_start(tail.rstrip()))]

    def _feed_text(self, text: str) -> list[str]:
        if not text or self._phase == Phase.DONE:
            return []
        self.raw_text += text
        self._pending += text
        if self._phase == Phase.PREAMBLE:
            assert self.shape.preamble_end is not None
            at = self._pending.find(self.shape.preamble_end)
            if at < 0:
                return []
            self._pending = self._pending[at + len(self.shape.preamble_end) :]
            self._phase = Phase.ECHO if self.shape.echo else Phase.BODY
        if self._phase == Phase.ECHO:
            assert self.shape.echo is not None
            # Held back only until the echo's length has come or a difference shows.
            length = echo_length(self._pending, self.shape.echo)
            if length is None:
                return []
            if length >= 0:
                self._pending = self._pending[length:]
                self.echo = "removed"
            else:
                self.echo = "not found"
                self._late_echo = True
            self._phase = Phase.BODY
        return self._scan_body()

    def _cut_late_echo(self, final: bool) -> tuple[list[str], bool]:
        """Scan what comes before an echo at a line start (whole, or maybe arriving) and
        take the echo out, so the prompt's own turn markers never end the reply. Returns
        the pieces, and True when the rest waits for an echo that may be arriving."""
        assert self.shape.echo is not None
        text = self._pending
        room = ECHO_SEARCH_CHARS - (len(self.raw_text) - len(text))
        found = late_echo(text, self.shape.echo, room)
        if found is None or (final and not found[1]):
            # Past the search, or the output ended before the echo was whole: no echo.
            self._late_echo = found is None and room > len(text)
            return [], False
        start, whole = found
        self._late_echo = False  # what comes before the echo is scanned as reply
        self._pending = text[:start]
        pieces = self._scan_body()
        if self._phase == Phase.DONE:
            return pieces, False
        # What was held back before the echo can no longer begin a marker: it is reply,
        # all but its trailing whitespace, which joins the reply's next words.
        held = self._pending
        pieces += self._emit(self._trim_start(held.rstrip()))
        space = held[len(held.rstrip()) :]
        if not whole:
            self._pending, self._late_echo = space + text[start:], True
            return pieces, True
        self._pending = space + text[start + len(self.shape.echo.lstrip()) :]
        self._trim_from, self.echo = len(space), "removed"
        return pieces, False

    def _scan_body(self, final: bool = False) -> list[str]:
        pieces: list[str] = []
        if self._late_echo:
            pieces, waiting = self._cut_late_echo(final)
            if waiting or self._phase == Phase.DONE:
                return pieces
        if self._trim_from is not None:
            # The reply after a removed echo opens without whitespace, as at the start.
            head, rest = self._pending[: self._trim_from], self._pending[self._trim_from :]
            self._pending = head + rest.lstrip()
            self._trim_from = self._trim_from if not rest.strip() else None
        # Markers are looked for before any whitespace is stripped: a reply that opens
        # with "\nUser:" is a new turn, not text.
        text = self._pending
        cut = self._first_marker(text, final)
        if cut is not None:
            at, marker = cut
            self._pending = ""
            self._phase = Phase.DONE
            self.stopped_by = marker if marker in self._stops else None
            self.finish_reason = "stop" if marker not in self.shape.trailer_markers else None
            return pieces + self._emit(self._trim_start(text[:at].rstrip()))
        # A stop that reaches into chrome still arriving is held whole until that is decided.
        blocked = [at for at in (text.find(stop) for stop in self._stops) if at >= 0]
        hold = max(
            _longest_partial(text, self._markers), len(text) - min(blocked, default=len(text))
        )
        # Trailing whitespace is held as well, so a stream strips exactly like a joined reply.
        ready = text[: len(text) - hold]
        safe = ready.rstrip()
        self._pending = text[len(safe) :]
        return pieces + self._emit(self._trim_start(safe))

    def _trim_start(self, piece: str) -> str:
        return piece if self._started else piece.lstrip()

    def _emit(self, piece: str) -> list[str]:
        if not piece:
            return []
        budget = self.shape.token_budget
        if budget is not None:
            room = budget * CHARS_PER_TOKEN - len(self.reply_text)
            if len(piece) >= room:
                piece = piece[: max(0, room)]
                self._pending = ""
                self._phase = Phase.DONE
                self.finish_reason = "length"
                if not piece:
                    return []
        self._started = True
        self.reply_text += piece
        return [piece]

    def _first_marker(self, text: str, final: bool) -> tuple[int, str] | None:
        """Where the reply ends: the stop that is complete first (then the one that starts
        first), as a reader of one token at a time such as llama-server sees it however
        reads are cut; else the first chrome marker."""
        chrome: tuple[int, str] | None = None
        for marker in self._chrome:
            at = text.find(marker)
            if at >= 0 and (chrome is None or at < chrome[0]):
                chrome = (at, marker)
        # A stop may not reach into chrome, even chrome still arriving: llama-completion's
        # " [end of text]" holds a space, llama-cli's "\n\n\nExiting..." newlines.
        limit = len(text) if final else len(text) - _longest_partial(text, self._chrome)
        if chrome is not None:
            limit = min(limit, chrome[0])
        best: tuple[int, int, str] | None = None
        for stop in self._stops:
            at = text.find(stop)
            end = at + len(stop)
            if at >= 0 and end <= limit and (best is None or (end, at) < best[:2]):
                best = (end, at, stop)
        if best is not None:
            return best[1], best[2]
        return chrome


def _longest_partial(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could begin one of ``markers``."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


def _overlap(data: bytes, closing: bytes) -> int:
    """Length of the longest end of ``data`` that begins ``closing``."""
    for size in range(min(len(closing), len(data)), 0, -1):
        if data.endswith(closing[:size]):
            return size
    return 0
