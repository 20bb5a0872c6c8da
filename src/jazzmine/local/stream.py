"""Streams that keep their response: iterate for the text, then read ``.response``.

``stream()`` and ``astream()`` return these. They are plain iterators of reply pieces,
so code written against jazzmine's ``Iterator[str]`` keeps working; once iterated to the
end, ``.response`` is the ``LLMResponse`` that ``generate`` would have returned (usage,
finish reason, metrics). ``generate`` is such a stream, joined. Closing a stream early
ends its model process. The async stream runs the very same call in a thread of its own
(``bridge``); only the waiting differs.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .call.limits import ConcurrencyLimit
from .call.run import Call, run_call
from .reply.parts import TEXT, TOOL_CALL, Piece
from .types import LLMResponse

if TYPE_CHECKING:
    from .call.bridge import (
        OffLoop,  # asyncio: loaded by async use only (see the package docstring)
    )

# An event of ``events()``: ("text", str), ("reasoning", str) or ("tool_call", ToolCall).
Event = tuple[str, Any]

_NOT_DONE = "the stream has not been iterated to its end yet: its response is not known"


def _finish(call: Call, stacklevel: int) -> LLMResponse:
    assert call.result is not None  # run_call ended: the response is made
    if call.empty:
        # stacklevel counts the frames between here and the caller's own line.
        warnings.warn(call.empty_warning(), RuntimeWarning, stacklevel=stacklevel + 1)
    return call.result


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


class ResponseStream(_KeepsResponse, Iterator[str]):
    def __init__(self, call: Call, limit: ConcurrencyLimit, holder: str = "stream()") -> None:
        self._call = call
        # The slot is taken on first iteration, and freed once the call's child is gone.
        self._pieces = run_call(call, limit.hold(call.deadline, holder))
        self._response: LLMResponse | None = None

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> str:
        try:
            while True:
                kind, text = next(self._pieces)
                if kind == TEXT:
                    return text
        except StopIteration:
            self._finish(stacklevel=2)
            raise

    def _finish(self, stacklevel: int) -> LLMResponse:
        if self._response is None:
            self._response = _finish(self._call, stacklevel + 1)
        return self._response

    def events(self) -> Iterator[Event]:
        """Everything the reply holds, as it comes: ("reasoning", text) while the model
        thinks, ("text", text) for the answer, then ("tool_call", ToolCall) for each call
        once the reply is complete. Afterwards ``.response`` is set, as after iterating."""
        yield from self._pieces
        for call in self._finish(stacklevel=2).tool_calls:
            yield (TOOL_CALL, call)

    def join(self, *, stacklevel: int = 2) -> LLMResponse:
        """Iterate what is left; the response."""
        for _ in self._pieces:
            pass
        return self._finish(stacklevel)

    def close(self) -> None:
        """End the call now if it is still running (the model process is stopped)."""
        self._call.interrupt("the stream's close()")
        self._pieces.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
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
        self, build: Callable[[], Call], limit: ConcurrencyLimit, holder: str = "astream()"
    ) -> None:
        self._call: Call | None = None
        self._build, self._limit, self._holder = build, limit, holder
        self._pieces: OffLoop[Piece] | None = None
        self._ended = False
        self._response: LLMResponse | None = None

    async def _next_piece(self) -> Piece:
        if self._ended:
            raise StopAsyncIteration
        pieces = self._pieces or await self._open()
        try:
            return await pieces.__anext__()
        except BaseException:
            self._ended = True
            raise

    async def _open(self) -> OffLoop[Piece]:
        from .call.bridge import OffLoop, run_off_loop

        try:
            call = self._call = await run_off_loop(self._build, lambda: None)
            try:
                permit = await self._limit.aacquire(call.deadline, self._holder)
            except TimeoutError as error:
                raise call.failure(error) from None
            try:
                # The slot is freed in the call's thread, once its child is gone.
                self._pieces = OffLoop(run_call(call), call.interrupt, on_exit=permit.release)
            except BaseException:
                permit.release()
                raise
        except BaseException:
            self._ended = True
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
                if kind == TEXT:
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
            yield (TOOL_CALL, call)

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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
