"""LocalLLM: the jazzmine provider that runs a local model binary.

Thin by design: it validates options, builds the request, picks the transport and
streams the transport's raw output through reply assembly. ``generate`` is a joined
``stream``, so the two always agree; sync and async differ only in how bytes are awaited.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from ..base import BaseLLM
from ..errors import LLMError, LLMInternalError, LLMInvalidRequestError, LLMTimeoutError
from ..types import LLMResponse, MessagePart
from . import binary as binaries
from . import defaults, gguf, percall
from .limits import ConcurrencyLimit
from .process import DeadlineExceeded
from .prompt import NEXT_TURN_MARKERS, flatten, validate_messages
from .reply import OutputShape, ReplyAssembler, failure_of, finish_reason_of, usage_of
from .request import GenerationRequest, RunOutcome

# Room left for the reply when the caller sets no max_tokens and no n_ctx.
DEFAULT_REPLY_ROOM = 1024
_CONTEXT_STEP = 256
_PER_CALL_OPTIONS = frozenset({"temperature", "max_tokens", "seed"})


class LocalLLM(BaseLLM):
    """Runs a local model binary (llama.cpp first) once per call.

    ``binary_path`` and ``model`` default to the embedded llama.cpp build and Gemma 3
    270M (``jazzmine setup``); ``JAZZMINE_LLAMA_BIN`` and ``JAZZMINE_MODEL`` override them.
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
        n_gpu_layers: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        prompt_flag: str | None = None,
        argv_template: Sequence[str] | None = None,
        max_concurrency: int = 1,
        **kwargs: Any,
    ) -> None:
        uses_default_binary = binary_path is None and "JAZZMINE_LLAMA_BIN" not in os.environ
        self.binary_path = os.path.expanduser(
            os.fspath(binary_path)
            if binary_path is not None
            else str(defaults.default_binary_path())
        )
        model_text = os.fspath(model) if model is not None else None
        self._model_path: str | None = None
        if model_text is not None and binaries.looks_like_gguf(model_text):
            self._model_path = os.path.expanduser(model_text)
        label = model_text or (defaults.DEFAULT_MODEL_FILE.removesuffix(".gguf"))
        super().__init__(
            model=label, temperature=temperature, max_tokens=max_tokens, timeout=timeout
        )
        # No model named: the default GGUF, unless the binary turns out to carry its own.
        self._wants_default_model = model_text is None
        self._uses_default_binary = uses_default_binary
        self.stop = _stop_list(stop)
        self.seed = seed
        self.n_ctx = _optional_int("n_ctx", n_ctx, minimum=0)
        self.threads = _optional_int("threads", threads, minimum=1)
        self.n_gpu_layers = _optional_int("n_gpu_layers", n_gpu_layers, minimum=-1)
        _optional_int("max_tokens", max_tokens, minimum=1)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.extra_args = tuple(str(arg) for arg in extra_args)
        percall.check_extra_args(self.extra_args)
        if prompt_flag is not None and argv_template is not None:
            raise ValueError("give prompt_flag or argv_template, not both")
        template = tuple(argv_template) if argv_template is not None else None
        if prompt_flag is not None:
            template = (prompt_flag, "{prompt}")
        self.argv_template = template
        self.env = dict(env) if env is not None else None
        self._limit = ConcurrencyLimit(max_concurrency)
        self.max_concurrency = max_concurrency

    # ---------- the spec's internals ----------
    def _format_prompt(self, messages: Sequence[MessagePart]) -> str:
        return flatten(messages)

    # ---------- public API ----------
    def generate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        call = self._new_call(messages, stop, kwargs)
        for _ in self._run(call):
            pass
        return call.response()

    async def agenerate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        call = self._new_call(messages, stop, kwargs)
        async for _ in self._arun(call):
            pass
        return call.response()

    def stream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> Iterator[str]:
        call = self._new_call(messages, stop, kwargs)
        return self._run(call)

    def astream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        call = self._new_call(messages, stop, kwargs)
        return self._arun(call)

    def health_check(self) -> bool:
        try:
            binaries.check_executable(self.binary_path)
        except OSError:
            return False
        model_path = self._model_path or (
            str(defaults.default_model_path()) if self._wants_default_model else None
        )
        return model_path is None or os.path.exists(model_path)

    def close(self) -> None:
        """Nothing is pooled in per-call mode: each call reaps its own child."""

    async def aclose(self) -> None:
        self.close()

    # ---------- one call ----------
    def _new_call(
        self, messages: Sequence[MessagePart], stop: Iterable[str] | None, overrides: dict[str, Any]
    ) -> _Call:
        unknown = set(overrides) - _PER_CALL_OPTIONS
        if unknown:
            raise TypeError(f"unexpected per-call option(s): {', '.join(sorted(unknown))}")
        checked = validate_messages(messages)
        max_tokens = _optional_int("max_tokens", overrides.get("max_tokens", self.max_tokens), 1)
        request = GenerationRequest(
            prompt=self._format_prompt(checked),
            max_tokens=max_tokens,
            temperature=overrides.get("temperature", self.temperature),
            seed=overrides.get("seed", self.seed),
            stop_sequences=(*self.stop, *_stop_list(stop), *NEXT_TURN_MARKERS),
        )
        return _Call(self, request)

    def _prepare(self, call: _Call) -> percall.LaunchPlan:
        info = binaries.probe(self.binary_path)
        call.binary_kind = info.kind.value
        options = percall.ModelOptions(
            binary_path=self.binary_path,
            model_path=self._resolve_model(info),
            n_ctx=self._context_size(call.request, info),
            threads=self.threads,
            n_gpu_layers=self.n_gpu_layers,
            extra_args=self.extra_args,
            env=self.env,
            argv_template=self.argv_template,
        )
        return percall.build_plan(options, info, call.request)

    def _resolve_model(self, info: binaries.BinaryInfo) -> str | None:
        if self._model_path is not None:
            return self._model_path
        llama_kind = info.kind is not binaries.BinaryKind.PROMPT_FLAG
        if self._wants_default_model and llama_kind and self.argv_template is None:
            self._model_path = str(defaults.ensure_default_model())
            return self._model_path
        return None

    def _context_size(self, request: GenerationRequest, info: binaries.BinaryInfo) -> int | None:
        if self.n_ctx is not None or info.kind is binaries.BinaryKind.PROMPT_FLAG:
            return self.n_ctx
        # Sized to the call: a token is never shorter than a byte, so this bounds the
        # prompt; llama.cpp would otherwise reserve the model's whole context.
        needed = (
            len(request.prompt.encode("utf-8")) + 2 + (request.max_tokens or DEFAULT_REPLY_ROOM)
        )
        size = max(512, math.ceil(needed / _CONTEXT_STEP) * _CONTEXT_STEP)
        trained = _trained_context(self._model_path)
        return 0 if trained is not None and size >= trained else size

    def _run(self, call: _Call) -> Iterator[str]:
        deadline = call.deadline()
        try:
            with ExitStack() as stack:
                stack.enter_context(self._limit.hold(deadline))
                plan = self._prepare(call)
                session = stack.enter_context(percall.PerCallSession(plan, self.env))
                call.session = session
                for chunk in session.chunks(deadline):
                    yield from call.feed(chunk)
                    if call.assembler.done:
                        break
                outcome = session.finish(call.assembler.done, deadline)
        except (TimeoutError, DeadlineExceeded):
            raise call.timed_out() from None
        yield from call.complete(outcome)

    async def _arun(self, call: _Call) -> AsyncIterator[str]:
        deadline = call.deadline()
        try:
            async with self._limit.ahold(deadline):
                plan = await asyncio.to_thread(self._prepare, call)
                async with percall.AsyncPerCallSession(plan, self.env) as session:
                    call.session = session
                    async for chunk in session.chunks(deadline):
                        for piece in call.feed(chunk):
                            yield piece
                        if call.assembler.done:
                            break
                    outcome = await session.finish(call.assembler.done, deadline)
        except (TimeoutError, asyncio.TimeoutError, DeadlineExceeded):
            raise call.timed_out() from None
        for piece in call.complete(outcome):
            yield piece


class _Call:
    """The state of one call, shared by the sync and async drivers."""

    def __init__(self, llm: LocalLLM, request: GenerationRequest) -> None:
        self.llm = llm
        self.request = request
        self.started = time.monotonic()
        self.binary_kind = "unknown"
        self.session: percall.PerCallSession | percall.AsyncPerCallSession | None = None
        self.assembler: ReplyAssembler = ReplyAssembler(OutputShape(), request.stop_sequences)
        self._assembler_ready = False
        self._outcome: RunOutcome | None = None

    def deadline(self) -> float | None:
        return None if self.llm.timeout is None else self.started + self.llm.timeout

    def feed(self, chunk: bytes) -> list[str]:
        if not self._assembler_ready:
            assert self.session is not None
            self.assembler = ReplyAssembler(self.session.plan.shape, self.request.stop_sequences)
            self._assembler_ready = True
        return self.assembler.feed(chunk)

    def complete(self, outcome: RunOutcome) -> list[str]:
        if not self._assembler_ready:
            assert self.session is not None
            self.assembler = ReplyAssembler(self.session.plan.shape, self.request.stop_sequences)
            self._assembler_ready = True
        tail = self.assembler.finish()
        self._outcome = outcome
        failure = failure_of(outcome, self.llm.binary_path, self.assembler.reply_text)
        if failure is not None:
            raise failure
        if not self.assembler.reply_text:
            warnings.warn(
                f"{self.llm.binary_path} finished without producing any text",
                RuntimeWarning,
                stacklevel=4,
            )
        return tail

    def timed_out(self) -> LLMTimeoutError:
        stderr = self.session.stderr_text() if self.session is not None else ""
        return LLMTimeoutError(
            f"the call ran past its timeout of {self.llm.timeout} s; the model process was stopped",
            partial_text=self.assembler.reply_text,
            stderr=stderr,
        )

    def response(self) -> LLMResponse:
        outcome = self._outcome
        assert outcome is not None
        usage, usage_source = usage_of(self.request.prompt, self.assembler.reply_text, outcome)
        return LLMResponse(
            text=self.assembler.reply_text,
            usage=usage,
            model=self.llm.model,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            finish_reason=finish_reason_of(self.assembler, outcome, self.request.max_tokens),
            raw=self.assembler.raw_text,
            api_metrics={
                "provider": "local",
                "endpoint": "subprocess",
                "transport": "per-call",
                "binary": self.llm.binary_path,
                "binary_kind": self.binary_kind,
                "usage_source": usage_source,
                "exit_code": outcome.exit_code,
                "stopped_by": self.assembler.stopped_by,
                "request_bytes": len(self.request.prompt.encode("utf-8")),
                "response_bytes": len(self.assembler.raw_text.encode("utf-8")),
                "status_code": 0,
            },
        )


def _stop_list(stop: Iterable[str] | str | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else tuple(stop)
    for item in items:
        if not isinstance(item, str) or not item:
            raise LLMInvalidRequestError(f"stop sequences must be non-empty strings, got {item!r}")
    return items


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LLMInvalidRequestError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _trained_context(model_path: str | None) -> int | None:
    if model_path is None or not os.path.exists(model_path):
        return None
    try:
        arch = gguf.read_metadata(model_path, ["general.architecture"]).get("general.architecture")
        if not isinstance(arch, str):
            return None
        value = gguf.read_metadata(model_path, [f"{arch}.context_length"]).get(
            f"{arch}.context_length"
        )
    except (OSError, gguf.GGUFError):
        return None
    return value if isinstance(value, int) else None


__all__ = ["LLMError", "LLMInternalError", "LocalLLM"]
