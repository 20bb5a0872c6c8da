"""One call, from request to response: the same code for every transport and every method.

``run_call`` drives the call's flow (``flow``): it runs each attempt the flow yields on
the transport, passes the raw bytes through reply assembly and tells the flow what the
run came to. ``Call`` holds the state (the run's request, its session, the assembled
reply, the outcome) and is the one boundary where what went wrong becomes the error the
caller sees, built once with everything it carries: the reply so far, the stderr, the
cause the transport diagnosed. ``generate`` and ``stream``, sync and async, all run this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    DeadlineExceeded,
    LLMContextLengthError,
    LLMError,
    LLMInvalidRequestError,
    LLMTimeoutError,
    completed,
)
from ..reply.assembler import ReplyAssembler
from ..reply.outcome import failure_of, finish_reason_of, usage_of
from ..reply.parts import TEXT, Piece, ReplyParts
from ..request import GenerationRequest, OutputShape, RunOutcome, constraint_error
from ..transports.base import Session, Transport
from ..types import LLMResponse, LLMUsage
from ..usage import estimate_tokens, usage_from_counts
from .flow import Attempt, Ended, Flow
from .limits import SlotWaitTimeout


@dataclass
class CallFacts:
    """What the response reports besides the reply: set by LocalLLM when it builds the call."""

    model: str
    binary_path: str
    prompt_format: str
    timeout: float | None
    # What the response's api_metrics say besides the run's own (the tool-call family
    # and choice, the messages left out by context_overflow).
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    """A finished run whose reply the call goes on from (a reasoning budget's thinking)."""

    request: GenerationRequest
    assembler: ReplyAssembler
    outcome: RunOutcome


@dataclass
class Call:
    transport: Transport
    facts: CallFacts
    flow: Flow
    # The flow's first attempt, taken when the call was built (so bad input fails there).
    first: Attempt
    started: float = field(default_factory=time.monotonic)
    request: GenerationRequest = field(init=False)
    # Splits the reply into reasoning, answer text and tool calls (a no-op by default).
    parts: ReplyParts = field(default_factory=lambda: ReplyParts(None, None))
    phases: list[Phase] = field(default_factory=list)
    session: Session | None = None
    assembler: ReplyAssembler = field(init=False)
    outcome: RunOutcome | None = None
    # Set when the run finished without a single character of reply text.
    empty: bool = False
    # The response, once the call is over.
    result: LLMResponse | None = None
    _ended_by: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._begin(self.first)

    @property
    def deadline(self) -> float | None:
        timeout = self.facts.timeout
        return None if timeout is None else self.started + timeout

    def _begin(self, attempt: Attempt) -> list[Piece]:
        """Take ``attempt`` as the run to come; the pieces that join it to the reply so far."""
        joint: list[Piece] = []
        if attempt.fresh is not None:
            self.phases.clear()
            self.parts = attempt.fresh.agent.reply_parts()
            self.facts.prompt_format = attempt.fresh.prompt_format
            self.facts.metrics.update(attempt.metrics)
        elif self.outcome is not None:
            self.phases.append(Phase(self.request, self.assembler, self.outcome))
            joint = list(self.pieces([attempt.joint]))
        self.request, self.outcome, self.session = attempt.request, None, None
        self.assembler = ReplyAssembler(OutputShape(), self.request.stop_sequences)
        return joint

    # ---------- the session ----------
    def attach(self, session: Session) -> None:
        """The transport knows what surrounds the reply in its output."""
        with self._lock:
            self.session = session
            ended_by = self._ended_by
        self.assembler = ReplyAssembler(session.shape, self.request.stop_sequences)
        if ended_by is not None:
            session.interrupt(ended_by)

    def interrupt(self, reason: str = "the caller") -> None:
        """From any thread: end the run (a stream closed or cancelled early)."""
        with self._lock:
            self._ended_by = reason
            session = self.session
        if session is not None:
            session.interrupt(reason)

    def run(self, attempt: Attempt) -> Generator[Piece, None, tuple[Ended, list[Piece]]]:
        """One run: its pieces as they are assembled; then what it came to, and the last
        pieces (held back, so the slot is free before the caller gets them)."""
        yield from self._begin(attempt)
        deadline = self.deadline
        try:
            with self.transport.open(self.request, deadline) as session:
                self.attach(session)
                for chunk in session.chunks(deadline):
                    yield from self.pieces(self.assembler.feed(chunk))
                    if self.assembler.done:
                        break
                outcome = session.finish(self.assembler.done, deadline)
            tail = list(self.pieces(self.complete(outcome)))
        except LLMContextLengthError as refusal:
            if self.assembler.reply_text:
                raise
            return Ended("", 0, refusal), []
        assert self.outcome is not None
        used = usage_of(self.request.prompt, self.assembler.reply_text, self.outcome)[0]
        return Ended(self.assembler.reply_text, used.completion_tokens), tail

    # ---------- the boundary ----------
    def failure(self, error: BaseException) -> BaseException:
        """What the caller sees for ``error``: the one mapping to the public error tree."""
        self.assembler.finish()  # what was held back for stop matching is reply text too
        stderr = self.session.stderr_text() if self.session is not None else ""
        if isinstance(error, SlotWaitTimeout):
            return LLMTimeoutError(
                f"the call ran past its timeout of {self.facts.timeout} s waiting for a free "
                f"slot: {error}"
            )
        if isinstance(error, (TimeoutError, DeadlineExceeded)):
            return LLMTimeoutError(
                f"the call ran past its timeout of {self.facts.timeout} s; "
                "the model process was stopped",
                partial_text=self._earlier_text() + self.assembler.reply_text,
                stderr=stderr,
            )
        if not isinstance(error, LLMError):
            return error
        return completed(
            error,
            partial_text=self._earlier_text() + self.assembler.reply_text,
            stderr=stderr,
            cause=self.transport.explain(error),
        )

    def complete(self, outcome: RunOutcome) -> list[str]:
        """The rest of the reply; raises what the run amounts to if it failed."""
        tail = self.assembler.finish()
        self.outcome = outcome
        failure = failure_of(outcome, self._binary(), self.assembler.reply_text)
        if failure is not None:
            rejected = constraint_error(outcome.stderr) if self.request.constrained else None
            if rejected is not None:
                what = "grammar" if self.request.grammar is not None else "JSON schema"
                failure = LLMInvalidRequestError(
                    f"llama.cpp rejected the {what}: {rejected}",
                    stderr=outcome.stderr,
                    exit_code=outcome.exit_code,
                )
            raise failure
        self.empty = not self.assembler.reply_text
        return tail

    def pieces(self, reply_pieces: list[str]) -> Iterator[Piece]:
        """Reply text from the assembler as (kind, text) pieces: reasoning and answer."""
        for piece in reply_pieces:
            if self.parts.active:
                yield from self.parts.feed(piece)
            else:
                yield (TEXT, piece)

    def finish_parts(self, finish_reason: str) -> list[Piece]:
        """The last pieces once the call is over; the tool calls are parsed here."""
        if not self.parts.active:
            return []
        return self.parts.finish(complete=finish_reason != "length")

    def _earlier_text(self) -> str:
        """The reply text of finished phases, with what joined them."""
        if not self.phases:
            return ""
        first = self.phases[0].request.prompt
        return self.request.prompt[len(first) :]

    def _raw(self) -> str:
        """The model's output over every phase."""
        earlier = "".join(phase.assembler.raw_text for phase in self.phases)
        return earlier + self.assembler.raw_text

    def _usage(self) -> tuple[LLMUsage, str]:
        """Usage over every phase: the first prompt, and every phase's reply."""
        assert self.outcome is not None
        usage, source = usage_of(self.request.prompt, self.assembler.reply_text, self.outcome)
        if not self.phases:
            return usage, source
        first_phase = self.phases[0]
        first, _ = usage_of(
            first_phase.request.prompt, first_phase.assembler.reply_text, first_phase.outcome
        )
        completion = first.completion_tokens + usage.completion_tokens
        return usage_from_counts(first.prompt_tokens, completion), source

    def _binary(self) -> str:
        details = self.session.details if self.session is not None else {}
        return str(details.get("binary") or self.facts.binary_path)

    def empty_warning(self) -> str:
        return f"{self._binary()} finished without producing any text"

    # ---------- the result ----------
    def finish_reason(self) -> str:
        assert self.outcome is not None
        return finish_reason_of(self.assembler, self.outcome, self.request.max_tokens)

    def response(self, finish_reason: str) -> LLMResponse:
        outcome = self.outcome
        assert outcome is not None and self.session is not None
        usage, usage_source = self._usage()
        details = self.session.details
        metrics: dict[str, Any] = {
            "provider": "local",
            "endpoint": details.get("endpoint"),
            "transport": self.transport.name,
            "binary": details.get("binary"),
            "binary_kind": details.get("binary_kind"),
            "model_path": details.get("model_path"),
            "usage_source": usage_source,
            "prompt_format": self.facts.prompt_format,
            "exit_code": outcome.exit_code,
            "stopped_by": self.assembler.stopped_by,
            "echo": self.assembler.echo,
            "request_bytes": len(self.request.prompt.encode("utf-8")),
            "response_bytes": len(self._raw().encode("utf-8")),
            "status_code": 0,
        }
        metrics.update({key: value for key, value in details.items() if key not in metrics})
        metrics.update(outcome.details)
        metrics.update(self.facts.metrics)
        reused = metrics.get("prompt_tokens_reused")
        if isinstance(reused, int) and usage.prompt_tokens:
            # The share of the prompt the warm server took from its cache, not evaluated.
            metrics["prompt_cache_share"] = round(reused / usage.prompt_tokens, 3)
        text = self.assembler.reply_text
        if self.parts.active:
            text = self.parts.text
            if self.parts.tool_calls:
                finish_reason = "tool_calls"
            metrics.update(self.parts.metrics())
            if self.parts.reasoning is not None:
                # estimated as usage is when llama.cpp does not count: it counts the
                # reply's tokens as one number
                metrics["reasoning_tokens"] = estimate_tokens(self.parts.reasoning)
        return LLMResponse(
            text=text,
            usage=usage,
            model=self.facts.model,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            finish_reason=finish_reason,
            raw=self._raw(),
            api_metrics=metrics,
            tool_calls=list(self.parts.tool_calls),
            reasoning=self.parts.reasoning,
        )


def run_call(
    call: Call, slot: AbstractContextManager[object] | None = None
) -> Generator[Piece, None, None]:
    """Reply pieces of one call as (kind, text), as they are assembled; at the end the
    response is in ``call.result``. ``slot`` is the concurrency permit (taken by an async
    caller before the thread starts, so then none is given here). The flow decides
    every run."""
    try:
        with slot if slot is not None else nullcontext():
            attempt = call.first
            while True:
                ended, tail = yield from call.run(attempt)
                try:
                    attempt = call.flow.send(ended)
                except StopIteration:
                    break
                yield from tail
        finish_reason = call.finish_reason()
        tail += call.finish_parts(finish_reason)
        call.result = call.response(finish_reason)
    except (TimeoutError, DeadlineExceeded, LLMError) as error:
        raise call.failure(error) from error
    yield from tail
