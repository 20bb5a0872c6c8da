"""Streams that keep their response: iterate for the text, then read ``.response``.

``stream()`` and ``astream()`` return these. They are plain iterators of reply pieces,
so code written against jazzmine's ``Iterator[str]`` keeps working; once iterated to the
end, ``.response`` is the ``LLMResponse`` that ``generate`` would have returned (usage,
finish reason, metrics). ``generate`` is such a stream, joined. Closing a stream early
ends its model process. The async stream runs the very same call in a thread of its own
(``bridge``); only the waiting differs.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .call import Call, run_call
from .errors import LLMContextLengthError
from .limits import ConcurrencyLimit
from .reply_parts import Piece
from .types import LLMResponse

if TYPE_CHECKING:
    from .bridge import OffLoop  # asyncio: loaded by async use only (see the package docstring)

# An event of ``events()``: ("text", str), ("reasoning", str) or ("tool_call", ToolCall).
Event = tuple[str, Any]
# context_overflow="drop_oldest": given the refusal of a prompt over the context, the
# call with fewer messages, or None to let the refusal stand.
Rebuild = Callable[[LLMContextLengthError], Call | None]

_NOT_DONE = "the stream has not been iterated to its end yet: its response is not known"


def _finish(call: Call, stacklevel: int) -> LLMResponse:
    response = call.response()
    if call.empty:
        # stacklevel counts the frames between here and the caller's own line.
        warnings.warn(call.empty_warning(), RuntimeWarning, stacklevel=stacklevel + 1)
    return response


class _KeepsResponse:
    _response: LLMResponse | None = None

    @property
    def messages_left_out(self) -> int:
        """How many of the oldest messages ``context_overflow="drop_oldest"`` left out of
        the call being read (0 when all were sent); known once the stream has started."""
        call: Call | None = getattr(self, "_call", None)  # an async stream's: once built
        return int(call.facts.metrics.get("messages_left_out", 0)) if call is not None else 0

    @property
    def response(self) -> LLMResponse:
        """The call's ``LLMResponse``, once the stream was iterated to its end."""
        if self._response is None:
            raise RuntimeError(_NOT_DONE)
        return self._response


class _Current:
    """The call a stream is reading, replaced when a refused prompt is retried (an async
    stream's is None until it is built)."""

    def __init__(self, call: Call | None) -> None:
        self.call = call


def _retrying(
    current: _Current, limit: ConcurrencyLimit, rebuild: Rebuild | None, holder: str
) -> Iterator[Piece]:
    """The call's pieces. A prompt over the context is refused before any piece: with a
    rebuild, the call is made again with fewer messages, and the caller sees one stream.
    A function apart from the stream, not a method: a generator holding its stream would
    be a reference cycle, and an abandoned stream would keep its child until the cycle
    collector ran instead of ending it at once."""
    call = current.call
    assert call is not None  # a sync stream's call is built with it
    while True:
        started = False
        try:
            slot = limit.hold(call.deadline, holder)
            with contextlib.closing(run_call(call, slot)) as pieces:
                for piece in pieces:
                    started = True
                    yield piece
            return
        except LLMContextLengthError as refusal:
            retry = None if started or rebuild is None else rebuild(refusal)
            if retry is None:
                raise
            call = current.call = retry


class ResponseStream(_KeepsResponse, Iterator[str]):
    def __init__(
        self,
        call: Call,
        limit: ConcurrencyLimit,
        rebuild: Rebuild | None = None,
        holder: str = "stream()",
    ) -> None:
        self._current = _Current(call)
        self._pieces = _retrying(self._current, limit, rebuild, holder)
        self._response: LLMResponse | None = None

    @property
    def _call(self) -> Call:
        call = self._current.call
        assert call is not None
        return call

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> str:
        try:
            while True:
                kind, text = next(self._pieces)
                if kind == "text":
                    return text
        except StopIteration:
            if self._response is None:
                self._response = _finish(self._call, stacklevel=2)
            raise

    def events(self) -> Iterator[Event]:
        """Everything the reply holds, as it comes: ("reasoning", text) while the model
        thinks, ("text", text) for the answer, then ("tool_call", ToolCall) for each call
        once the reply is complete. Afterwards ``.response`` is set, as after iterating."""
        yield from self._pieces
        if self._response is None:
            self._response = _finish(self._call, stacklevel=2)
        for call in self._response.tool_calls:
            yield ("tool_call", call)

    def join(self, *, stacklevel: int = 2) -> LLMResponse:
        """Iterate what is left; the response."""
        for _ in self._pieces:
            pass
        if self._response is None:
            self._response = _finish(self._call, stacklevel)
        return self._response

    def close(self) -> None:
        """End the call now if it is still running (the model process is stopped)."""
        self._call.interrupt("the stream's close()")
        self._pieces.close()  # type: ignore[attr-defined]

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncResponseStream(_KeepsResponse, AsyncIterator[str]):
    """The async twin. ``build`` makes the call (it may probe the binary and render a
    template), so it runs off the event loop too, on first iteration; the slot is waited
    for on the loop, so a queued call holds no thread.

    Driven by hand, not by async generators: the loop's finaliser closes abandoned async
    generators in tasks of their own, in no set order (see ``bridge``). Abandoned, the
    stream's ``OffLoop`` stops the call by itself.
    """

    def __init__(
        self,
        build: Callable[[], Call],
        limit: ConcurrencyLimit,
        rebuild: Rebuild | None = None,
        holder: str = "astream()",
    ) -> None:
        self._current = _Current(None)
        self._build, self._limit, self._rebuild, self._holder = build, limit, rebuild, holder
        self._pieces: OffLoop[Piece] | None = None
        self._started = False  # a piece was handed out: a refusal can no longer be retried
        self._ended = False
        self._response: LLMResponse | None = None

    @property
    def _call(self) -> Call | None:
        return self._current.call

    async def _next_piece(self) -> Piece:
        """The call's next piece; a prompt refused for length before any piece is made
        again with fewer messages (``rebuild``), and the caller sees one stream."""
        from .bridge import run_off_loop

        while not self._ended:
            pieces = self._pieces or await self._open()
            try:
                piece = await pieces.__anext__()
            except LLMContextLengthError as refusal:
                retry = None
                if not self._started and self._rebuild is not None:
                    retry = await run_off_loop(
                        functools.partial(self._rebuild, refusal), lambda: None
                    )
                if retry is None:
                    self._ended = True
                    raise
                self._current.call, self._pieces = retry, None
                continue
            except BaseException:
                self._ended = True
                raise
            self._started = True
            return piece
        raise StopAsyncIteration

    async def _open(self) -> OffLoop[Piece]:
        from .bridge import OffLoop, run_off_loop

        if self._current.call is None:
            self._current.call = await run_off_loop(self._build, lambda: None)
        call = self._current.call
        try:
            permit = await self._limit.aacquire(call.deadline, self._holder)
        except TimeoutError as error:
            self._ended = True
            raise call.failure(error) from None
        try:
            # The slot is freed in the call's thread, once its child is gone.
            self._pieces = OffLoop(run_call(call), call.interrupt, on_exit=permit.release)
        except BaseException:
            permit.release()
            raise
        return self._pieces

    def _finish(self, stacklevel: int) -> LLMResponse:
        if self._response is None:
            assert self._call is not None
            self._response = _finish(self._call, stacklevel + 1)
        return self._response

    def __aiter__(self) -> AsyncResponseStream:
        return self

    async def __anext__(self) -> str:
        try:
            while True:
                kind, text = await self._next_piece()
                if kind == "text":
                    return text
        except StopAsyncIteration:
            self._finish(stacklevel=2)
            raise

    async def events(self) -> AsyncIterator[Event]:
        """As ``ResponseStream.events``: reasoning, text, then the tool calls."""
        while True:
            try:
                piece = await self._next_piece()
            except StopAsyncIteration:
                break
            yield piece
        for call in self._finish(stacklevel=2).tool_calls:
            yield ("tool_call", call)

    async def join(self, *, stacklevel: int = 2) -> LLMResponse:
        while True:
            try:
                await self._next_piece()
            except StopAsyncIteration:
                return self._finish(stacklevel)

    async def aclose(self) -> None:
        """End the call now if it is still running, and wait until its process is gone."""
        self._ended = True
        if self._pieces is not None:
            await self._pieces.aclose()

    async def __aenter__(self) -> AsyncResponseStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
