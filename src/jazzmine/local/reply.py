"""Raw output in, reply pieces out: the one place that decides what the user sees.

Shared by every transport and by sync and async alike. It decodes UTF-8 without ever
splitting a character, drops what is not the reply (a banner, the echoed prompt, an
end-of-text marker, UI chrome after the reply), cuts the reply at stop sequences, strips
surrounding whitespace the same way for a stream as for a joined reply, and records why
the reply ended.
"""

from __future__ import annotations

import codecs
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import LLMError, LLMInternalError, context_length_error
from .request import RunOutcome
from .types import LLMUsage
from .usage import CHARS_PER_TOKEN, estimate_tokens, usage_from_counts


@dataclass(frozen=True)
class OutputShape:
    """What a binary prints around the reply, so it can be removed.

    ``preamble_end``: everything up to and including this text is chrome (a banner).
    ``echo``: the prompt, when the binary may print it back before the reply.
    ``end_markers``: printed by the binary when the model itself ended the reply.
    ``trailer_markers``: the reply is over and chrome follows (timings, prompts for input).
    ``token_budget``: for a binary that was not told the caller's ``max_tokens``: the reply
    is cut here (estimated tokens, as usage is), and the run ended.
    """

    preamble_end: str | None = None
    echo: str | None = None
    end_markers: tuple[str, ...] = ()
    trailer_markers: tuple[str, ...] = ()
    token_budget: int | None = None


@dataclass
class ReplyAssembler:
    shape: OutputShape
    stop_sequences: Sequence[str] = ()
    reply_text: str = ""
    raw_text: str = ""
    # "stop" when a stop sequence or an end marker was seen; None while undecided.
    finish_reason: str | None = None
    stopped_by: str | None = None
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _phase: str = "preamble"
    _pending: str = ""
    _started: bool = False

    def __post_init__(self) -> None:
        self._markers = tuple(
            marker
            for marker in (
                *self.stop_sequences,
                *self.shape.end_markers,
                *self.shape.trailer_markers,
            )
            if marker
        )
        if self.shape.preamble_end is None:
            self._phase = "echo" if self.shape.echo else "body"

    @property
    def done(self) -> bool:
        """True once the reply is complete; the producer may be stopped."""
        return self._phase == "done"

    def feed(self, data: bytes) -> list[str]:
        """Take raw bytes; return the reply pieces they complete (possibly none)."""
        return self._feed_text(self._decoder.decode(data))

    def finish(self) -> list[str]:
        """The producer ended: release what was held back for marker matching."""
        pieces = self._feed_text(self._decoder.decode(b"", final=True))
        if self._phase in ("preamble", "echo"):
            # The binary never printed what we waited for: what it did print is the reply,
            # still cut at stops and trailers.
            self._phase = "body"
            pieces += self._scan_body()
        if self._phase == "done":
            return pieces
        tail = self._pending.rstrip()
        self._pending = ""
        self._phase = "done"
        return [*pieces, *self._emit(self._trim_start(tail))]

    def _feed_text(self, text: str) -> list[str]:
        if not text or self._phase == "done":
            return []
        self.raw_text += text
        self._pending += text
        if self._phase == "preamble":
            assert self.shape.preamble_end is not None
            at = self._pending.find(self.shape.preamble_end)
            if at < 0:
                return []
            self._pending = self._pending[at + len(self.shape.preamble_end) :]
            self._phase = "echo" if self.shape.echo else "body"
        if self._phase == "echo":
            echo = self.shape.echo
            assert echo is not None
            if self._pending.startswith(echo):
                self._pending = self._pending[len(echo) :]
            elif echo.startswith(self._pending):
                return []
            self._phase = "body"
        return self._scan_body()

    def _scan_body(self) -> list[str]:
        # Markers are looked for before any whitespace is stripped: a reply that opens
        # with "\nUser:" is a new turn, not text.
        text = self._pending
        cut = self._first_marker(text)
        if cut is not None:
            at, marker = cut
            self._pending = ""
            self._phase = "done"
            self.stopped_by = marker
            self.finish_reason = "stop" if marker not in self.shape.trailer_markers else None
            return self._emit(self._trim_start(text[:at].rstrip()))
        hold = self._held_suffix_length(text)
        # Trailing whitespace is held as well, so a stream strips exactly like a joined reply.
        ready = text[: len(text) - hold]
        safe = ready.rstrip()
        self._pending = text[len(safe) :]
        return self._emit(self._trim_start(safe))

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
                self._phase = "done"
                self.finish_reason = "length"
                if not piece:
                    return []
        self._started = True
        self.reply_text += piece
        return [piece]

    def _first_marker(self, text: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for marker in self._markers:
            at = text.find(marker)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, marker)
        return best

    def _held_suffix_length(self, text: str) -> int:
        """Length of the longest end of ``text`` that could begin a marker."""
        longest = 0
        for marker in self._markers:
            for size in range(min(len(marker) - 1, len(text)), longest, -1):
                if text.endswith(marker[:size]):
                    longest = size
                    break
        return longest


# llama-completion's refusal of a prompt longer than its context (common/ and
# tools/completion: "prompt is too long (%d tokens, max %d)").
_TOO_LONG = re.compile(r"prompt is too long \((\d+) tokens, max (\d+)\)")


def failure_of(outcome: RunOutcome, binary: str, partial_text: str) -> LLMError | None:
    """The error a finished run amounts to, or None when it succeeded."""
    code = outcome.exit_code
    if outcome.interrupted or code is None or code == 0:
        return None
    too_long = _TOO_LONG.search(outcome.stderr)
    if too_long is not None:
        return context_length_error(
            int(too_long.group(1)), int(too_long.group(2)), stderr=outcome.stderr, exit_code=code
        )
    if code < 0:
        signum = -code
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        message = f"{binary} was killed by {name}"
        if signum == signal.SIGILL:
            message += (
                " (an illegal instruction: the binary was built for CPU features this machine "
                "lacks; rebuild it for a portable target, e.g. with `jazzmine setup`)"
            )
        message += _stderr_tail(outcome.stderr)
        return LLMInternalError(
            message,
            partial_text=partial_text,
            stderr=outcome.stderr,
            signal_name=name,
            exit_code=code,
        )
    return LLMInternalError(
        f"{binary} exited with code {code}" + _stderr_tail(outcome.stderr),
        partial_text=partial_text,
        stderr=outcome.stderr,
        exit_code=code,
    )


def _stderr_tail(stderr: str) -> str:
    text = stderr.strip()
    return f"; stderr:\n{text}" if text else " (stderr was empty)"


def finish_reason_of(assembler: ReplyAssembler, outcome: RunOutcome, max_tokens: int | None) -> str:
    if assembler.finish_reason in ("stop", "length"):
        return assembler.finish_reason
    if outcome.hit_token_limit is not None:
        return "length" if outcome.hit_token_limit else "stop"
    if (
        max_tokens is not None
        and outcome.completion_tokens is not None
        and outcome.completion_tokens >= max_tokens
    ):
        return "length"
    # A binary that marks the model's own end and did not: a limit ended the reply.
    return "length" if outcome.marks_end_of_text else "stop"


def usage_of(prompt: str, reply_text: str, outcome: RunOutcome) -> tuple[LLMUsage, str]:
    """Exact counts when the model process reported them, else the spec's heuristic."""
    if outcome.prompt_tokens is not None and outcome.completion_tokens is not None:
        return usage_from_counts(outcome.prompt_tokens, outcome.completion_tokens), "reported"
    return usage_from_counts(estimate_tokens(prompt), estimate_tokens(reply_text)), "estimated"
