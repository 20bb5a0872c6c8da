"""LocalLLM: the jazzmine provider that runs a local model binary.

Thin by design: it validates options, builds the request, picks the transport (a child
per call, or a kept llama-server in warm mode) and streams the transport's raw output
through reply assembly. ``generate`` is a joined ``stream``, so the two always agree;
sync and async differ only in how bytes are awaited.

The transports and reply assembly are imported on first use, so importing jazzmine stays
cheap for programs that never call a local model.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .base import BaseLLM
from .config import (
    Options,
    call_options,
    constraint_of,
    looks_like_gguf,
    reject_unknown,
)
from .errors import LLMError, LLMInternalError, LLMInvalidRequestError, LLMTimeoutError
from .limits import ConcurrencyLimit
from .prompt import NEXT_TURN_MARKERS, flatten, validate_messages
from .request import GenerationRequest, RunOutcome, constraint_error
from .types import LLMResponse, MessagePart

if TYPE_CHECKING:
    from .gguf import TokenizerInfo
    from .reply import ReplyAssembler
    from .template import ChatTemplate
    from .transport import AsyncSession, Session, Transport

DEFAULT_MODEL_LABEL = "gemma-3-270m-q4_k_m"


class LocalLLM(BaseLLM):
    """Runs a local model binary (llama.cpp first): a process per call, or warm.

    ``binary_path`` and ``model`` default to the embedded llama.cpp build and Gemma 3
    270M (``jazzmine setup``); ``JAZZMINE_LLAMA_BIN`` and ``JAZZMINE_MODEL`` override them.
    ``keep_alive`` (or ``JAZZMINE_KEEP_ALIVE``) switches to warm mode: a private
    llama-server keeps the model loaded between calls.

    Every option is checked here, and again when given per call, by its entry in
    ``config.OPTIONS``: a misspelt name or a wrong value raises at once (a TypeError or
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
        n_gpu_layers: int | None = None,
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
        **kwargs: Any,
    ) -> None:
        reject_unknown("LocalLLM()", kwargs, per_call=False)
        # Here locals() holds just the parameters: each goes through its entry in
        # config.OPTIONS, so none is taken unchecked.
        options = Options.checked(locals())
        super().__init__(
            model=options.model or DEFAULT_MODEL_LABEL,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            timeout=options.timeout,
        )
        self.stop = options.stop or ()
        self.seed = options.seed
        self.response_format = options.response_format
        self.grammar = options.grammar
        self.max_concurrency = options.max_concurrency
        self._limit = ConcurrencyLimit(options.max_concurrency)
        self.config = options.local_config()
        self.prompt_format = options.prompt_format
        self._chat_template_value = options.chat_template
        self._template: ChatTemplate | None = None
        self._template_resolved = False
        if self._chat_template_value is not None:
            self._template = self._caller_template(self._chat_template_value)
            self._template_resolved = True
        self._transport: Transport | None = None
        if self.config.keep_alive is not None:
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
        from . import defaults

        return str(defaults.default_model_path())

    def _format_prompt(self, messages: Sequence[MessagePart]) -> str:
        """The spec's flattening (``prompt_format="flat"``)."""
        return flatten(messages)

    # ---------- prompt formats ----------
    def _caller_template(self, value: str) -> ChatTemplate:
        from .template import load_template, template_with_tokens

        tokens = self._model_tokens()
        return template_with_tokens(
            load_template(value, tokens.bos_token, tokens.eos_token), tokens
        )

    def _model_tokens(self) -> TokenizerInfo:
        from .gguf import GGUFError, TokenizerInfo, read_tokenizer_info

        path = self.model_path
        if path is not None and os.path.exists(path):
            try:
                return read_tokenizer_info(path)
            except (OSError, GGUFError):
                pass
        return TokenizerInfo(None, "", "", True, False)

    def _chat_template(self) -> ChatTemplate | None:
        """The template prompts are written in, or None for the spec's flattening.

        ``"auto"`` uses the model's own template when the binary is llama.cpp and the
        model carries one; learned once per instance (the binary probe is cached too).
        """
        if self._template_resolved or self.prompt_format == "flat":
            return self._template if self.prompt_format != "flat" else None
        from .template import template_from_gguf

        found = None
        path = self.model_path
        if path is not None and os.path.exists(path) and self._runs_llama_cpp():
            from .gguf import GGUFError

            try:
                found = template_from_gguf(path)
            except (OSError, GGUFError):
                found = None  # not a readable GGUF: llama.cpp will say what is wrong with it
        if found is None and self.prompt_format == "template":
            raise LLMInvalidRequestError(
                f"prompt_format='template' but the model {path!r} carries no chat template "
                "(tokenizer.chat_template); pass chat_template= (a Jinja string or file)"
            )
        self._template, self._template_resolved = found, True
        return found

    def _runs_llama_cpp(self) -> bool:
        if self.config.keep_alive is not None:
            return True  # llama-server
        if self.config.argv_template is not None:
            return False
        from .binary import BinaryKind, probe

        return probe(self.binary_path).kind is not BinaryKind.PROMPT_FLAG

    # ---------- public API ----------
    def generate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        call = self._new_call(messages, stop, kwargs, "generate()")
        for _ in self._run(call):
            pass
        return call.response()

    async def agenerate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse:
        call_options("agenerate()", stop, kwargs)  # bad options fail before any probe
        await self._aresolve_template()
        call = self._new_call(messages, stop, kwargs, "agenerate()")
        async for _ in self._arun(call):
            pass
        return call.response()

    def stream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> Iterator[str]:
        call = self._new_call(messages, stop, kwargs, "stream()")
        call.caller_depth = 3  # the caller iterates _run itself: one frame fewer than generate
        return self._run(call)

    def astream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        # Bad input fails here, not at the first piece.
        validate_messages(messages)
        call_options("astream()", stop, kwargs)
        return self._astream(messages, stop, kwargs)

    async def _astream(
        self, messages: Sequence[MessagePart], stop: Iterable[str] | None, overrides: dict[str, Any]
    ) -> AsyncIterator[str]:
        await self._aresolve_template()
        stream = self._arun(self._new_call(messages, stop, overrides, "astream()"))
        try:
            async for piece in stream:
                yield piece
        finally:
            # Closing this stream must close the inner one now, which reaps the child.
            await stream.aclose()  # type: ignore[attr-defined]

    async def _aresolve_template(self) -> None:
        """The first call learns the prompt format (a --help probe, a GGUF header read):
        off the event loop."""
        if not self._template_resolved and self.prompt_format != "flat":
            import asyncio

            await asyncio.to_thread(self._chat_template)

    def health_check(self) -> bool:
        """Binary and model present; in warm mode, the server answering (started if need be)."""
        return self._get_transport().health()

    def close(self) -> None:
        """Per-call mode pools nothing; warm mode lets go of its shared server."""
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # ---------- one call ----------
    def _make_transport(self) -> Transport:
        if self.config.keep_alive is None:
            from .percall import PerCallTransport

            return PerCallTransport(self.config)
        from .server import ServerTransport

        return ServerTransport(self.config, slots=self.max_concurrency)

    def _get_transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._make_transport()
        return self._transport

    def _new_call(
        self,
        messages: Sequence[MessagePart],
        stop: Iterable[str] | None,
        overrides: dict[str, Any],
        where: str = "generate()",
    ) -> _Call:
        options = call_options(where, stop, overrides)
        checked = validate_messages(messages)
        template = self._chat_template()
        if "response_format" in options or "grammar" in options:
            # A per-call constraint replaces the constructor's, whichever kind it is.
            json_schema, grammar = constraint_of(
                options.get("response_format"), options.get("grammar")
            )
        else:
            json_schema, grammar = constraint_of(self.response_format, self.grammar)
        if template is not None:
            from .template import end_of_turn_markers, render

            prompt, turn_markers = render(template, checked), end_of_turn_markers(template)
        else:
            prompt, turn_markers = self._format_prompt(checked), NEXT_TURN_MARKERS
        if json_schema is not None or grammar is not None:
            # A constrained reply cannot start a new turn; a marker must not cut it short.
            turn_markers = ()
        request = GenerationRequest(
            prompt=prompt,
            max_tokens=options.get("max_tokens", self.max_tokens),
            temperature=options.get("temperature", self.temperature),
            seed=options.get("seed", self.seed),
            stop_sequences=(*self.stop, *options["stop"], *turn_markers),
            json_schema=json_schema,
            grammar=grammar,
        )
        return _Call(self, request, "template" if template is not None else "flat")

    def _run(self, call: _Call) -> Iterator[str]:
        from .process import DeadlineExceeded

        deadline = call.deadline()
        try:
            with (
                self._limit.hold(deadline),
                self._get_transport().open(call.request, deadline) as session,
            ):
                call.attach(session)
                for chunk in session.chunks(deadline):
                    yield from call.assembler.feed(chunk)
                    if call.assembler.done:
                        break
                outcome = session.finish(call.assembler.done, deadline)
        except (TimeoutError, DeadlineExceeded):
            raise call.timed_out() from None
        except LLMError as error:
            raise call.explained(error) from error.__cause__
        tail, failure = call.complete(outcome)
        if failure is not None:
            raise call.explained(failure)
        yield from tail

    async def _arun(self, call: _Call) -> AsyncIterator[str]:
        import asyncio

        from .process import DeadlineExceeded

        deadline = call.deadline()
        try:
            async with self._limit.ahold(deadline):
                session_manager = await self._get_transport().aopen(call.request, deadline)
                async with session_manager as session:
                    call.attach(session)
                    async for chunk in session.chunks(deadline):
                        for piece in call.assembler.feed(chunk):
                            yield piece
                        if call.assembler.done:
                            break
                    outcome = await session.finish(call.assembler.done, deadline)
        except (TimeoutError, asyncio.TimeoutError, DeadlineExceeded):
            raise call.timed_out() from None
        except LLMError as error:
            # Explaining may probe RPC workers (a connect timeout each): off the loop.
            raise await asyncio.to_thread(call.explained, error) from error.__cause__
        tail, failure = call.complete(outcome)
        if failure is not None:
            raise await asyncio.to_thread(call.explained, failure)
        for piece in tail:
            yield piece


class _Call:
    """The state of one call, shared by the sync and async drivers."""

    def __init__(self, llm: LocalLLM, request: GenerationRequest, prompt_format: str) -> None:
        from .reply import OutputShape, ReplyAssembler

        self.llm = llm
        # Frames from _Call.complete up to the user's line, for warnings.
        self.caller_depth = 4
        self.request = request
        self.prompt_format = prompt_format
        self.started = time.monotonic()
        self.session: Session | AsyncSession | None = None
        self.assembler: ReplyAssembler = ReplyAssembler(OutputShape(), request.stop_sequences)
        self._outcome: RunOutcome | None = None

    def deadline(self) -> float | None:
        return None if self.llm.timeout is None else self.started + self.llm.timeout

    def attach(self, session: Session | AsyncSession) -> None:
        """The transport knows what surrounds the reply in its output."""
        from .reply import ReplyAssembler

        self.session = session
        self.assembler = ReplyAssembler(session.shape, self.request.stop_sequences)

    def complete(self, outcome: RunOutcome) -> tuple[list[str], LLMError | None]:
        """The rest of the reply, and the failure the run amounts to (to be explained)."""
        from .reply import failure_of

        tail = self.assembler.finish()
        self._outcome = outcome
        binary = (
            self.session.details["binary"] if self.session is not None else self.llm.binary_path
        )
        failure = failure_of(outcome, binary, self.assembler.reply_text)
        if failure is not None:
            rejected = constraint_error(outcome.stderr) if self.request.constrained else None
            if rejected is not None:
                what = "grammar" if self.request.grammar is not None else "JSON schema"
                return tail, LLMInvalidRequestError(
                    f"llama.cpp rejected the {what}: {rejected}",
                    stderr=outcome.stderr,
                    exit_code=outcome.exit_code,
                )
            return tail, failure
        if not self.assembler.reply_text:
            warnings.warn(
                f"{binary} finished without producing any text",
                RuntimeWarning,
                stacklevel=self.caller_depth,
            )
        return tail, None

    def explained(self, error: LLMError) -> LLMError:
        """Complete an error: the reply so far (nothing the model wrote is lost), the
        stderr, an unusable model file, and which RPC worker went away (llama.cpp's own
        messages about either are not always there)."""
        if not error.partial_text:
            self.assembler.finish()
            error.partial_text = self.assembler.reply_text
        if not error.stderr and self.session is not None:
            error.stderr = self.session.stderr_text()
        model = self.llm.config.model_path
        if isinstance(error, LLMInternalError) and model is not None and looks_like_gguf(model):
            from .gguf import file_problem

            # llama-completion logs from a thread it does not flush at exit, so its own
            # "failed to load model" lines are lost on some runs; name the cause ourselves.
            problem = file_problem(model)
            if problem is not None:
                self._prefix(error, problem)
        workers = self.llm.config.rpc_servers
        if workers and isinstance(error, LLMInternalError):
            from .rpc import unreachable

            gone = unreachable(workers, timeout=1.0)
            if gone:
                self._prefix(error, f"RPC worker {', '.join(gone)} went away during the call")
        return error

    @staticmethod
    def _prefix(error: LLMError, cause: str) -> None:
        error.message = f"{cause}; {error.message}"
        error.args = (error.message,)

    def timed_out(self) -> LLMTimeoutError:
        self.assembler.finish()  # what was held back for stop matching is reply text too
        stderr = self.session.stderr_text() if self.session is not None else ""
        return LLMTimeoutError(
            f"the call ran past its timeout of {self.llm.timeout} s; the model process was stopped",
            partial_text=self.assembler.reply_text,
            stderr=stderr,
        )

    def response(self) -> LLMResponse:
        from .reply import finish_reason_of, usage_of

        outcome = self._outcome
        assert outcome is not None and self.session is not None
        usage, usage_source = usage_of(self.request.prompt, self.assembler.reply_text, outcome)
        details = self.session.details
        metrics: dict[str, Any] = {
            "provider": "local",
            "endpoint": details.get("endpoint"),
            "transport": self.llm._get_transport().name,
            "binary": details.get("binary"),
            "binary_kind": details.get("binary_kind"),
            "model_path": details.get("model_path"),
            "usage_source": usage_source,
            "prompt_format": self.prompt_format,
            "exit_code": outcome.exit_code,
            "stopped_by": self.assembler.stopped_by,
            "request_bytes": len(self.request.prompt.encode("utf-8")),
            "response_bytes": len(self.assembler.raw_text.encode("utf-8")),
            "status_code": 0,
        }
        metrics.update({key: value for key, value in details.items() if key not in metrics})
        metrics.update(outcome.details)
        return LLMResponse(
            text=self.assembler.reply_text,
            usage=usage,
            model=self.llm.model,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            finish_reason=finish_reason_of(self.assembler, outcome, self.request.max_tokens),
            raw=self.assembler.raw_text,
            api_metrics=metrics,
        )


__all__ = ["LocalLLM"]
