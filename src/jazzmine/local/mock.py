"""A scripted transport, as httpx ships ``MockTransport``: no binary, no model, no process.

Hand it to ``LocalLLM(transport=MockTransport(handler))``. For every call, ``handler``
receives the ``GenerationRequest`` (the rendered prompt, stops, sampling, constraint) and
returns a ``MockReply``: the raw output pieces, how the run ended, or an error to raise.
Prompt building, stop handling, usage, finish reasons, streaming and errors then run
exactly as they do on a real transport, in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DeadlineExceeded, LLMError
from .request import GenerationRequest, OutputShape, RunOutcome


@dataclass
class MockReply:
    """What the scripted run prints and how it ends.

    ``chunks``: raw output pieces (str is sent as UTF-8). ``outcome``: the final record
    (exit code, token counts, ...); a successful run with no counts by default.
    ``error``: raised after the chunks instead of finishing. ``delay``: seconds before
    each chunk, for streaming, timeout and cancel tests. ``shape``: what surrounds the
    reply in the output (a banner, an echo, end markers).
    """

    chunks: Sequence[bytes | str] = ()
    outcome: RunOutcome = field(default_factory=lambda: RunOutcome(exit_code=0))
    error: LLMError | None = None
    delay: float = 0.0
    shape: OutputShape = field(default_factory=OutputShape)


def reply(*chunks: bytes | str, **fields: Any) -> MockReply:
    """Shorthand: ``reply("Hello", " world", outcome=RunOutcome(...))``."""
    return MockReply(chunks=chunks, **fields)


class MockSession:
    def __init__(self, scripted: MockReply) -> None:
        self._scripted = scripted
        self.shape = scripted.shape
        self.details: dict[str, Any] = {
            "endpoint": "mock",
            "binary": "mock",
            "binary_kind": "mock",
            "model_path": None,
        }
        self._interrupted = threading.Event()

    def __enter__(self) -> MockSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._interrupted.set()

    def chunks(self, deadline: float | None) -> Iterator[bytes]:
        for chunk in self._scripted.chunks:
            if self._scripted.delay:
                wait = self._scripted.delay
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                if self._interrupted.wait(wait):
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded
            yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        if self._scripted.error is not None and not reply_complete:
            raise self._scripted.error
        if reply_complete:
            outcome = self._scripted.outcome
            return RunOutcome(**{**outcome.__dict__, "interrupted": True})
        return self._scripted.outcome

    def stderr_text(self) -> str:
        return self._scripted.outcome.stderr

    def interrupt(self, reason: str) -> None:
        self._interrupted.set()


class MockTransport:
    """Runs every call through ``handler``; keeps the requests it was given."""

    name = "mock"

    def __init__(
        self,
        handler: Callable[[GenerationRequest], MockReply],
        *,
        runs_llama_cpp: bool = True,
    ) -> None:
        self._handler = handler
        self._runs_llama_cpp = runs_llama_cpp
        self.requests: list[GenerationRequest] = []
        self.closed = False

    def open(self, request: GenerationRequest, deadline: float | None) -> MockSession:
        self.requests.append(request)
        return MockSession(self._handler(request))

    def runs_llama_cpp(self) -> bool:
        return self._runs_llama_cpp

    def explain(self, error: LLMError) -> str | None:
        return None

    def health(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True
