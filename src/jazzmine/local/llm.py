"""LocalLLM: the jazzmine provider that runs a local model binary.

Thin by design: it checks options, writes the prompt, builds the request, picks the
transport (a child per call, or a kept llama-server in warm mode, unless one is handed
in) and returns a stream of the call (``call``, ``stream``). ``generate`` is that stream
joined, so the two always agree; the async methods run the same call off the event loop.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import defaults, system
from .base import BaseLLM
from .call.flow import Prepared, call_flow
from .call.limits import ConcurrencyLimit
from .call.prepare import CallDefaults, prepare
from .call.run import Call, CallFacts
from .errors import DeadlineExceeded, LLMContextLengthError, LLMTimeoutError
from .options.table import SAMPLING_OPTIONS, Options, call_options, reject_unknown
from .prompt.messages import flatten, validate_messages
from .prompt.overflow import DROP_OLDEST, trimmed_for
from .prompt.writer import PromptWriter
from .request import GenerationRequest
from .stream import AsyncResponseStream, ResponseStream
from .transports.base import Transport
from .transports.percall import PerCallTransport
from .types import LLMResponse, MessagePart


class LocalLLM(BaseLLM):
    """Runs a local model binary (llama.cpp first): a process per call, or warm.

    ``binary_path`` and ``model`` default to the embedded llama.cpp build and SmolLM2-135M-Instruct
    (``jazzmine setup``); ``JAZZMINE_LLAMA_BIN`` and ``JAZZMINE_MODEL`` override them.
    ``keep_alive`` (or ``JAZZMINE_KEEP_ALIVE``) switches to warm mode: a private
    llama-server keeps the model loaded between calls. ``transport`` replaces both with
    any object that speaks ``transports.base.Transport`` (``MockTransport`` for tests).

    Every option is checked here, and again when given per call, by its entry in
    ``options.table.OPTIONS``: a misspelt name or a wrong value raises at once (a TypeError or
    ValueError that is also an LLMInvalidRequestError) instead of being ignored.
    """

    def __init__(
        self,
        binary_path: str | os.PathLike[str] | None = None,
        model: str | os.PathLike[str] | None = None,
        *,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Iterable[str] | str | None = None,
        seed: int | None = None,
        n_ctx: int | None = None,
        threads: int | None = None,
        n_gpu_layers: int | str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prompt_flag: str | None = None,
        argv_template: Sequence[str] | None = None,
        max_concurrency: int = 1,
        keep_alive: float | str | None = None,
        server_path: str | os.PathLike[str] | None = None,
        response_format: Mapping[str, Any] | None = None,
        grammar: str | None = None,
        rpc_servers: Sequence[str] | str | None = None,
        tensor_split: Sequence[float] | None = None,
        prompt_format: str = "auto",
        chat_template: str | os.PathLike[str] | None = None,
        transport: Transport | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool = True,
        reasoning: bool | int = True,
        context_overflow: str = "error",
        allow_control_tokens_in_content: bool = False,
        framework_shapes: bool = True,
        **kwargs: Any,
    ) -> None:
        reject_unknown("LocalLLM()", kwargs, per_call=False)
        # Here locals() holds just the parameters: each goes through its entry in
        # options.OPTIONS, so none is taken unchecked.
        options = Options.checked(locals())
        if options.transport is None:
            # Here, not deep in the first call: Windows runs only the caller's transports.
            system.require_children("LocalLLM() runs llama.cpp as a child process")
        super().__init__(
            model=options.model or defaults.DEFAULT_MODEL_LABEL,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            timeout=options.timeout,
        )
        self.stop = options.stop or ()
        self.seed = options.seed
        self.response_format = options.response_format
        self.grammar = options.grammar
        self.sampling = {name: getattr(options, name) for name in SAMPLING_OPTIONS}
        self.tools = options.tools
        self.tool_choice = options.tool_choice
        self.parallel_tool_calls = options.parallel_tool_calls
        self.reasoning = options.reasoning
        self.context_overflow = options.context_overflow
        self.allow_control_tokens_in_content = options.allow_control_tokens_in_content
        self.framework_shapes = options.framework_shapes
        self.max_concurrency = options.max_concurrency
        self._limit = ConcurrencyLimit(options.max_concurrency)
        self.config = options.local_config()
        self.prompt_format = options.prompt_format
        self._writer = PromptWriter(
            options.prompt_format,
            options.chat_template,
            lambda: self.model_path,
            options.allow_control_tokens_in_content,
        )
        self._transport: Transport | None = options.transport
        if self._transport is None and self.config.keep_alive is not None:
            self._transport = self._make_transport()  # a missing llama-server fails now

    # ---------- the spec's names ----------
    @property
    def binary_path(self) -> str:
        return self.config.binary_path

    @property
    def keep_alive(self) -> float | None:
        return self.config.keep_alive

    @property
    def model_path(self) -> str | None:
        """The GGUF given to llama.cpp binaries: the one named, else the default model."""
        if self.config.model_path is not None or not self.config.wants_default_model:
            return self.config.model_path
        return str(defaults.default_model_path())

    def _format_prompt(self, messages: Sequence[MessagePart]) -> str:
        """The spec's flattening (``prompt_format="flat"``), as the spec names it."""
        return flatten(messages)

    # ---------- public API ----------
    def generate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        return self._stream("generate()", messages, stop, kwargs).join(stacklevel=3)

    def stream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> ResponseStream:
        """Reply pieces as they come; ``.response`` once iterated to the end."""
        return self._stream("stream()", messages, stop, kwargs)

    async def agenerate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        return await self._astream("agenerate()", messages, stop, kwargs).join(stacklevel=3)

    def astream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> AsyncResponseStream:
        return self._astream("astream()", messages, stop, kwargs)

    def build_request(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> GenerationRequest:
        """The request a call with these arguments would hand its transport (the rendered
        prompt, stops, sampling, constraint), without running anything, as httpx's
        ``Client.build_request`` does."""
        options = call_options("build_request()", stop, kwargs)
        return self._prepare(validate_messages(messages), options=options).request

    @property
    def transport(self) -> Transport:
        """The transport calls run on: the one handed in, else per call or warm."""
        return self._get_transport()

    def health_check(self) -> bool:
        """Binary and model present; in warm mode, the server answering (started if need be)."""
        return self._get_transport().health()

    def close(self) -> None:
        """Per-call mode pools nothing (running calls are ended); warm mode lets go of its
        shared server."""
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        from .call.bridge import run_off_loop  # asyncio: loaded by async use only (see __init__)

        await run_off_loop(self.close, lambda: None)

    # ---------- one call ----------
    def _stream(
        self,
        where: str,
        messages: Sequence[MessagePart],
        stop: Iterable[str] | None,
        overrides: dict[str, Any],
    ) -> ResponseStream:
        call = self._call(validate_messages(messages), call_options(where, stop, overrides))
        return ResponseStream(call, self._limit, holder=_opened_at(where))

    def _astream(
        self,
        where: str,
        messages: Sequence[MessagePart],
        stop: Iterable[str] | None,
        overrides: dict[str, Any],
    ) -> AsyncResponseStream:
        # Bad input fails here, at the call; probing and rendering wait for the thread.
        checked, options = validate_messages(messages), call_options(where, stop, overrides)
        return AsyncResponseStream(
            lambda: self._call(checked, options), self._limit, holder=_opened_at(where)
        )

    def _call(self, messages: list[MessagePart], options: dict[str, Any]) -> Call:
        """The call of checked ``messages`` with checked ``options``: its flow, and the
        flow's first attempt made here, so a template that fails, fails now."""
        started = time.monotonic()
        deadline = None if self.timeout is None else started + self.timeout
        transport = self._get_transport()
        shorten = None
        if self.context_overflow == DROP_OLDEST:
            max_tokens = options.get("max_tokens", self.max_tokens)
            shorten = functools.partial(_shorter, max_tokens=max_tokens)
        flow = call_flow(
            functools.partial(self._prepare, options=options, deadline=deadline),
            messages,
            grow=getattr(transport, "grow", None),
            shorten=shorten,
        )
        try:
            first = next(flow)
        except DeadlineExceeded:
            raise LLMTimeoutError(
                "preparing the call (rendering the chat template, building the tools' "
                f"grammar) ran past the call's timeout of {self.timeout} s"
            ) from None
        assert first.fresh is not None  # a call starts fresh
        facts = CallFacts(self.model, self.binary_path, first.fresh.prompt_format, self.timeout)
        return Call(transport, facts, flow, first, started=started)

    def _prepare(
        self,
        messages: list[MessagePart],
        *,
        options: Mapping[str, Any],
        deadline: float | None = None,
    ) -> Prepared:
        """Checked messages and options made ready to run, over this instance's values."""
        instance = CallDefaults(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            stop=tuple(self.stop),
            response_format=self.response_format,
            grammar=self.grammar,
            sampling=dict(self.sampling),
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            reasoning=self.reasoning,
            framework_shapes=self.framework_shapes,
        )
        return prepare(messages, options, instance, self._writer, self._get_transport(), deadline)

    def _make_transport(self) -> Transport:
        if self.config.keep_alive is None:
            return PerCallTransport(self.config)
        # Warm mode's transport brings in the HTTP client (about 40 ms of import): loaded
        # by warm mode only. One of the three lazy edges named in the package docstring.
        from .transports.server.transport import ServerTransport

        return ServerTransport(self.config, slots=self.max_concurrency)

    def _get_transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._make_transport()
        return self._transport


def _shorter(
    messages: list[MessagePart], refusal: LLMContextLengthError, *, max_tokens: int | None
) -> list[MessagePart] | None:
    return trimmed_for(messages, refusal, max_tokens)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _opened_at(where: str) -> str:
    """``where`` and the caller's line outside this package: what a call queued behind
    this one is told it waits for (a stream kept but never read to its end)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR
    ):
        frame = frame.f_back
    return f"{where} opened at {frame.f_code.co_filename}:{frame.f_lineno}"


__all__ = ["LocalLLM"]
