"""LocalLLM's options: one table of names and checks, the names other libraries use for
them, and the checked ``Options`` a LocalLLM is built from.

``LocalLLM.__init__`` passes its parameters through ``Options.checked``, and each call's
keyword arguments go through ``call_options``: the same entry of ``OPTIONS`` checks a
value wherever it is given, so no option is ever taken unchecked or silently ignored.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import defaults
from ..errors import OptionTypeError, OptionValueError
from ..transports.config import LocalConfig, looks_like_gguf
from .agent import (
    CONTEXT_OVERFLOW,
    check_flag,
    check_fraction,
    check_penalty,
    check_reasoning,
    check_tool_choice_option,
    check_tools_option,
    check_top_k,
)
from .checks import (
    INT_MAX,
    PROMPT_FORMATS,
    RPC_DEFAULT_KEEP_ALIVE,
    SEED_MAX,
    SEED_MIN,
    Check,
    check_argv_template,
    check_choice,
    check_env,
    check_extra_args,
    check_integer,
    check_keep_alive,
    check_number,
    check_path,
    check_response_format,
    check_rpc_servers,
    check_stop,
    check_tensor_split,
    check_text,
    check_transport,
    constraint_of,
)
from .durations import parse_keep_alive
from .names import ALIASES, LLAMA_FLAGS, squashed


@dataclass(frozen=True)
class _Option:
    check: Check
    # None means "not set" (the default) for most options.
    nullable: bool = True
    # Also accepted by generate/stream and their async forms, replacing the instance's.
    per_call: bool = False


def _integer(minimum: int, maximum: int = INT_MAX) -> Check:
    return lambda name, value: check_integer(name, value, minimum, maximum)


# Every LocalLLM option and its check: LocalLLM's parameters are exactly these names.
OPTIONS: dict[str, _Option] = {
    "binary_path": _Option(check_path),
    "model": _Option(check_path),
    "temperature": _Option(lambda name, value: check_number(name, value, 0.0), per_call=True),
    "max_tokens": _Option(_integer(1), per_call=True),
    "timeout": _Option(lambda name, value: check_number(name, value, 0.0, above=True)),
    "stop": _Option(check_stop),
    "seed": _Option(_integer(SEED_MIN, SEED_MAX), per_call=True),
    "n_ctx": _Option(_integer(0)),
    "threads": _Option(_integer(1)),
    "n_gpu_layers": _Option(
        lambda name, value: value if value == "auto" else check_integer(name, value, -1, INT_MAX)
    ),
    "extra_args": _Option(check_extra_args, nullable=False),
    "env": _Option(check_env),
    "prompt_flag": _Option(check_text),
    "argv_template": _Option(check_argv_template),
    "max_concurrency": _Option(_integer(1), nullable=False),
    "keep_alive": _Option(check_keep_alive),
    "server_path": _Option(check_path),
    "response_format": _Option(check_response_format, per_call=True),
    "grammar": _Option(check_text, per_call=True),
    "rpc_servers": _Option(check_rpc_servers),
    "tensor_split": _Option(check_tensor_split),
    "prompt_format": _Option(
        lambda name, value: check_choice(name, value, PROMPT_FORMATS), nullable=False
    ),
    "chat_template": _Option(check_path),
    "transport": _Option(check_transport),
    # Sampling per call: llama.cpp's own settings, as flags per call and request fields warm.
    "top_p": _Option(check_fraction, per_call=True),
    "top_k": _Option(check_top_k, per_call=True),
    "min_p": _Option(check_fraction, per_call=True),
    "repeat_penalty": _Option(lambda name, value: check_number(name, value, 0.0), per_call=True),
    "presence_penalty": _Option(check_penalty, per_call=True),
    "frequency_penalty": _Option(check_penalty, per_call=True),
    # Agents: tools the model may call, and its thinking.
    "tools": _Option(check_tools_option, per_call=True),
    "tool_choice": _Option(check_tool_choice_option, per_call=True),
    "parallel_tool_calls": _Option(check_flag, nullable=False, per_call=True),
    "reasoning": _Option(check_reasoning, nullable=False, per_call=True),
    # Conversations longer than the context, and content that holds control-token text.
    "context_overflow": _Option(
        lambda name, value: check_choice(name, value, CONTEXT_OVERFLOW), nullable=False
    ),
    "allow_control_tokens_in_content": _Option(check_flag, nullable=False),
    # The jazzmine framework's parts (enhancer, summariser, selector, ...) held to the shape
    # their parsers read, recognised by their prompts (interop/).
    "framework_shapes": _Option(check_flag, nullable=False, per_call=True),
}
# The sampling options a request carries besides temperature and seed, in this order.
SAMPLING_OPTIONS = (
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
)
PER_CALL_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.per_call)


def unexpected_option(where: str, name: str, value: Any, *, per_call: bool) -> OptionTypeError:
    """The TypeError Python would raise, plus the option the caller most likely meant."""
    head = f"{where} got an unexpected keyword argument {name!r}"
    flag = {squashed(key): flag for key, flag in LLAMA_FLAGS.items()}.get(squashed(name))
    if flag is not None:
        return OptionTypeError(
            f"{head}; {name} is a llama.cpp flag with no option of its own: pass "
            f"LocalLLM(extra_args=[{flag!r}, {str(value)!r}])"
        )
    known = {squashed(option): option for option in OPTIONS}
    known.update((squashed(alias), option) for alias, option in ALIASES.items())
    meant = known.get(squashed(name))
    if meant is None:
        allowed = [*PER_CALL_OPTIONS, "stop"] if per_call else list(OPTIONS)
        close = difflib.get_close_matches(name, allowed, n=1) or difflib.get_close_matches(
            name, list(OPTIONS), n=1
        )
        meant = close[0] if close else None
    if meant is None:
        allowed_text = ", ".join(sorted([*PER_CALL_OPTIONS, "stop"] if per_call else OPTIONS))
        return OptionTypeError(f"{head}; the options are: {allowed_text}")
    if per_call and meant != "stop" and not OPTIONS[meant].per_call:
        return OptionTypeError(
            f"{head}; {meant} is set on LocalLLM(...), not per call"
            if meant == name
            else f"{head}; did you mean {meant!r}? It is set on LocalLLM(...), not per call"
        )
    return OptionTypeError(f"{head}; did you mean {meant!r}?")


def check_option(name: str, value: Any) -> Any:
    """``value`` checked and normalised as option ``name`` (the same at construction and
    per call)."""
    option = OPTIONS[name]
    if value is None and option.nullable:
        return None
    return option.check(name, value)


def reject_unknown(where: str, given: Mapping[str, Any], *, per_call: bool) -> None:
    allowed = PER_CALL_OPTIONS if per_call else OPTIONS
    for name, value in given.items():
        if name not in allowed:
            raise unexpected_option(where, name, value, per_call=per_call)


def call_options(where: str, stop: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One call's keyword arguments, checked as the constructor checks them; ``stop``
    (its own parameter) always present."""
    reject_unknown(where, overrides, per_call=True)
    checked = {name: check_option(name, value) for name, value in overrides.items()}
    checked["stop"] = check_option("stop", stop) or ()
    return checked


@dataclass(frozen=True)
class Options:
    """LocalLLM's arguments, each checked by its entry in ``OPTIONS``."""

    binary_path: str | None
    model: str | None
    temperature: float | None
    max_tokens: int | None
    timeout: float | None
    stop: tuple[str, ...] | None
    seed: int | None
    n_ctx: int | None
    threads: int | None
    n_gpu_layers: int | str | None
    extra_args: tuple[str, ...]
    env: dict[str, str] | None
    prompt_flag: str | None
    argv_template: tuple[str, ...] | None
    max_concurrency: int
    keep_alive: float | str | None
    server_path: str | None
    response_format: dict[str, Any] | None
    grammar: str | None
    rpc_servers: tuple[str, ...] | None
    tensor_split: tuple[float, ...] | None
    prompt_format: str
    chat_template: str | None
    transport: Any
    top_p: float | None
    top_k: int | None
    min_p: float | None
    repeat_penalty: float | None
    presence_penalty: float | None
    frequency_penalty: float | None
    tools: tuple[Any, ...] | None
    tool_choice: Any
    parallel_tool_calls: bool
    reasoning: bool | int
    context_overflow: str
    allow_control_tokens_in_content: bool
    framework_shapes: bool

    @classmethod
    def checked(cls, arguments: Mapping[str, Any]) -> Options:
        """From a mapping holding (at least) every option's name: LocalLLM's locals()."""
        values = {name: check_option(name, arguments[name]) for name in OPTIONS}
        options = cls(**values)
        if options.prompt_flag is not None and options.argv_template is not None:
            raise OptionValueError("give prompt_flag or argv_template, not both")
        constraint_of(options.response_format, options.grammar)  # not both either
        return options

    def local_config(self) -> LocalConfig:
        """The load-time settings, with the environment's defaults filled in."""
        binary = str(
            defaults.program_path(self.binary_path)
            if self.binary_path
            else defaults.default_binary_path()
        )
        template = self.argv_template
        if self.prompt_flag is not None:
            template = (self.prompt_flag, "{prompt}")
        keep_alive = self.keep_alive
        if keep_alive is None:
            keep_alive = _environment_default("JAZZMINE_KEEP_ALIVE", "keep_alive")
        workers = self.rpc_servers
        if workers is None:
            workers = _environment_default("JAZZMINE_RPC_SERVERS", "rpc_servers") or ()
        if keep_alive is None and workers:
            keep_alive = RPC_DEFAULT_KEEP_ALIVE
        model_path = (
            os.path.expanduser(self.model) if self.model and looks_like_gguf(self.model) else None
        )
        if self.model is not None and self.model.startswith(HF_PREFIX):
            # A pulled model, found on disk (never the network); absent: the pull command.
            from ..models.store import resolve

            model_path = resolve(self.model)
        return LocalConfig(
            binary_path=binary,
            model_path=model_path if self.model else None,
            wants_default_model=self.model is None,
            n_ctx=self.n_ctx,
            threads=self.threads,
            n_gpu_layers=self.n_gpu_layers,
            extra_args=self.extra_args,
            env=self.env,
            argv_template=template,
            server_path=os.path.expanduser(self.server_path) if self.server_path else None,
            keep_alive=parse_keep_alive(keep_alive),
            rpc_servers=workers,
            tensor_split=self.tensor_split,
        )


HF_PREFIX = "hf:"


def _environment_default(variable: str, option: str) -> Any:
    """An option's default from the environment, checked as the option is."""
    text = os.environ.get(variable) or None
    return None if text is None else OPTIONS[option].check(variable, text)
