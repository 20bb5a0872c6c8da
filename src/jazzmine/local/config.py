"""A LocalLLM's load-time settings, validated once, shared by every transport."""

from __future__ import annotations

import math
import operator
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import LLMInvalidRequestError
from .request import GenerationRequest

# Room left for the reply when the caller sets no max_tokens and no n_ctx.
DEFAULT_REPLY_ROOM = 1024
# Context per server slot when the caller sets no n_ctx (warm mode cannot size per call).
DEFAULT_SERVER_CONTEXT = 4096
# llama.cpp caps -ngl at the model's layer count, so this means "every layer".
ALL_LAYERS = 999
_CONTEXT_STEP = 256
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# llama.cpp's CPU threads meet at an OpenMP barrier after every graph node, where
# libgomp spins about 300,000 rounds before it sleeps. When two llama.cpp processes share
# the cores (concurrent calls, a warm server beside a per-call run, two agents), each
# spins on a core the other's late thread needs: generation fell about 20x here. A short
# spin keeps a lone run's speed and ends that (bench/results/perf.md, section 7).
SPIN_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}
_SPIN_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@dataclass(frozen=True)
class LocalConfig:
    binary_path: str
    # A GGUF the caller named, or None (then the default model for llama.cpp binaries).
    model_path: str | None
    wants_default_model: bool
    n_ctx: int | None
    threads: int | None
    n_gpu_layers: int | None
    extra_args: tuple[str, ...]
    env: Mapping[str, str] | None
    argv_template: tuple[str, ...] | None
    server_path: str | None
    # Seconds the warm server stays loaded when idle; None: per-call mode; < 0: until close.
    keep_alive: float | None
    # llama.cpp RPC workers ("host:port") that hold the offloaded layers.
    rpc_servers: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] | None = None

    def offload_args(self) -> list[str]:
        """Layers and where they go: -ngl, --rpc, -ts (shared by both transports)."""
        argv: list[str] = []
        layers = self.n_gpu_layers
        if layers is None and self.rpc_servers:
            layers = ALL_LAYERS  # the workers are there to hold the model
        if layers is not None:
            argv += ["-ngl", str(layers)]
        if self.rpc_servers:
            argv += ["--rpc", ",".join(self.rpc_servers)]
        if self.tensor_split:
            argv += ["-ts", ",".join(f"{share:g}" for share in self.tensor_split)]
        return argv

    def resolved_model(self, llama_binary: bool) -> str | None:
        """The GGUF passed to the binary: the caller's, else the default for llama.cpp."""
        if self.model_path is not None:
            return self.model_path
        if self.wants_default_model and llama_binary and self.argv_template is None:
            from . import defaults

            return str(defaults.ensure_default_model())
        return None

    def context_for_call(self, request: GenerationRequest, model_path: str | None) -> int:
        """Per-call context: sized to the call unless the caller chose one.

        A token is never shorter than a byte, so prompt bytes bound the prompt's tokens;
        llama.cpp would otherwise reserve the model's whole trained context.
        """
        if self.n_ctx is not None:
            return self.n_ctx
        reply_room = request.max_tokens or DEFAULT_REPLY_ROOM
        needed = len(request.prompt.encode("utf-8")) + 2 + reply_room
        size = max(512, math.ceil(needed / _CONTEXT_STEP) * _CONTEXT_STEP)
        trained = trained_context(model_path)
        return 0 if trained is not None and size >= trained else size

    def server_context(self, model_path: str | None) -> int:
        """Context per slot of a warm server."""
        if self.n_ctx is not None and self.n_ctx > 0:
            return self.n_ctx
        trained = trained_context(model_path)
        if self.n_ctx == 0 and trained is not None:
            return trained
        return min(DEFAULT_SERVER_CONTEXT, trained or DEFAULT_SERVER_CONTEXT)


def trained_context(model_path: str | None) -> int | None:
    """The model's trained context length, from its GGUF header."""
    if model_path is None or not os.path.exists(model_path):
        return None
    from . import gguf

    try:
        arch = gguf.read_metadata(model_path, ["general.architecture"]).get("general.architecture")
        if not isinstance(arch, str):
            return None
        key = f"{arch}.context_length"
        value = gguf.read_metadata(model_path, [key]).get(key)
    except (OSError, gguf.GGUFError):
        return None
    return value if isinstance(value, int) else None


def llama_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a llama.cpp child: ``env`` (or ours), plus a short OpenMP spin
    unless the caller chose how OpenMP waits."""
    chosen = dict(os.environ if env is None else env)
    if not any(name in chosen for name in _SPIN_SETTINGS):
        chosen.update(SPIN_DEFAULTS)
    return chosen


def looks_like_gguf(model: str | None) -> bool:
    """A model name that is a GGUF file (passed to the binary) rather than a label.

    An existing file is one when it starts with GGUF's magic, whatever its name; a name
    ending in ``.gguf`` always is, so a missing or damaged file reaches llama.cpp and
    ``gguf.file_problem``, which say what is wrong with it, instead of becoming a label.
    """
    if not model:
        return False
    if os.path.splitext(model)[1].lower() == ".gguf":
        return True
    path = os.path.expanduser(model)
    if not os.path.isfile(path):  # not a FIFO or a device either: reading those may block
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:
        return False


def parse_keep_alive(value: float | int | str | None, name: str = "keep_alive") -> float | None:
    """``None``/``0``: per-call mode; seconds or ``"30s"``/``"5m"``/``"1h"``; negative: forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise OptionValueError(f"{name} must be seconds or a duration like '5m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise OptionValueError(
                f"{name} must be seconds or a duration like '30s', '5m', '1h', got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds > threading.TIMEOUT_MAX:
        # The idle timer's thread dies of OverflowError past TIMEOUT_MAX (infinity too);
        # "until close()" has its own spelling.
        raise OptionValueError(
            f"{name} must be finite and at most {threading.TIMEOUT_MAX:.0f} seconds "
            f"(a negative value keeps the model loaded until close()), got {value!r}"
        )
    return None if seconds == 0 else seconds


# ---------- options: one check per kind, one table, used at construction and per call ----------


class OptionTypeError(LLMInvalidRequestError, TypeError):
    """An option of the wrong type. A TypeError, as Python raises for its own arguments, and
    an LLMInvalidRequestError, which code written for any jazzmine provider catches."""


class OptionValueError(LLMInvalidRequestError, ValueError):
    """An option of the right type whose value is out of range or malformed."""


# llama.cpp reads -n, -c, -t and -ngl as a C int (std::stoi): anything larger is refused there.
INT_MAX = 2**31 - 1
# llama.cpp reads --seed with std::stoul into a uint32_t, so -1 wraps to 0xFFFFFFFF
# (LLAMA_DEFAULT_SEED: a random seed), and llama-server takes -1 for random too. A
# larger value would be cut to 32 bits without a word.
SEED_MIN, SEED_MAX = -1, 2**32 - 1
GGUF_MAGIC = b"GGUF"
PROMPT_FORMATS = ("auto", "template", "flat")
# With RPC workers and no keep_alive, warm mode for this long: per call, every call
# would send the weights to the workers again.
RPC_DEFAULT_KEEP_ALIVE = "5m"
TEMPLATE_FIELDS = ("prompt", "prompt_file", "model", "max_tokens", "temperature", "seed")

Check = Callable[[str, Any], Any]


def _wrong_type(name: str, value: object, wanted: str) -> OptionTypeError:
    return OptionTypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")


def check_integer(name: str, value: Any, minimum: int, maximum: int) -> int:
    # bool is an int to Python, but True as a token count is a mistake, not a 1.
    if isinstance(value, bool):
        raise _wrong_type(name, value, "an integer")
    try:
        number = operator.index(value)  # int, and integer types such as numpy's
    except TypeError:
        raise _wrong_type(name, value, "an integer") from None
    if not minimum <= number <= maximum:
        raise OptionValueError(
            f"{name} must be an integer from {minimum} to {maximum}, got {number}"
        )
    return number


def check_number(name: str, value: Any, minimum: float, *, above: bool = False) -> float:
    """A finite real number >= ``minimum`` (> when ``above``); bool refused."""
    if isinstance(value, bool) or not _is_real(value):
        raise _wrong_type(name, value, "a number")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (above and number == minimum):
        bound = ">" if above else ">="
        raise OptionValueError(f"{name} must be a finite number {bound} {minimum:g}, got {value!r}")
    return number


def _is_real(value: object) -> bool:
    if isinstance(value, (int, float)):
        return True
    import numbers  # only for other number types (numpy's, Fraction): rare

    return isinstance(value, numbers.Real)


def check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, "a string")
    if not value:
        raise OptionValueError(f"{name} is empty; leave it out instead")
    return value


def check_path(name: str, value: Any) -> str:
    """A str or os.PathLike naming a file (or, for chat_template, Jinja text)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise _wrong_type(name, value, "a str or os.PathLike path")
    if not text.strip():
        raise OptionValueError(f"{name} is empty; leave it out for the default")
    if "\x00" in text:
        raise OptionValueError(f"{name} holds a NUL byte, which no path can")
    return text


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, f"one of {choices}")
    if value not in choices:
        raise OptionValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _items(name: str, value: Any, what: str) -> list[Any]:
    """The items of a list-like option; one string, bytes, a mapping or a scalar is refused."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _wrong_type(name, value, f"a list of {what}")
    return list(value)


def check_stop(name: str, value: Any) -> tuple[str, ...]:
    """Stop sequences; one string is one sequence, as in the OpenAI and llama.cpp APIs."""
    items = [value] if isinstance(value, str) else _items(name, value, "strings")
    for item in items:
        if not isinstance(item, str):
            raise _wrong_type(f"each of {name}", item, "a string")
        if not item:
            raise OptionValueError(f"{name} sequences must be non-empty strings, got {item!r}")
    return tuple(items)


def check_arguments(name: str, value: Any) -> tuple[str, ...]:
    """Command-line arguments: what subprocess takes (str or os.PathLike), as a list."""
    if isinstance(value, str):
        import shlex

        raise OptionTypeError(
            f"{name} must be a list of arguments, not one string: "
            f"write {shlex.split(value)!r} for {value!r}"
        )
    arguments = []
    for item in _items(name, value, "arguments"):
        text = os.fspath(item) if isinstance(item, os.PathLike) else item
        if not isinstance(text, str):
            raise _wrong_type(f"each of {name}", item, "a str or os.PathLike (write str(...))")
        if "\x00" in text:
            raise OptionValueError(f"{name} holds a NUL byte in {text!r}, which no argument can")
        arguments.append(text)
    return tuple(arguments)


def check_extra_args(name: str, value: Any) -> tuple[str, ...]:
    arguments = check_arguments(name, value)
    from . import percall

    try:
        percall.check_extra_args(arguments)
    except ValueError as error:
        raise OptionValueError(str(error)) from None
    return arguments


def check_argv_template(name: str, value: Any) -> tuple[str, ...]:
    """Arguments with placeholders; a misspelt one or a prompt never passed fails now."""
    import string

    template = check_arguments(name, value)
    used = set()
    for part in template:
        try:
            fields = {
                field for _, field, _, _ in string.Formatter().parse(part) if field is not None
            }
        except ValueError as error:
            raise OptionValueError(
                f"{name} part {part!r} is malformed ({error}); "
                "write a literal brace as {{ or }}"
            ) from None
        unknown = fields - set(TEMPLATE_FIELDS)
        if unknown:
            raise OptionValueError(
                f"{name} part {part!r} has the placeholder {sorted(unknown)[0]!r}; known ones are "
                + ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            )
        used |= fields
    if not used & {"prompt", "prompt_file"}:
        raise OptionValueError(
            f"{name} never passes the prompt: give {{prompt}} or {{prompt_file}}"
        )
    return template


def check_env(name: str, value: Any) -> dict[str, str]:
    """A child's whole environment: str names to str values, as the OS keeps them."""
    if not isinstance(value, Mapping):
        raise _wrong_type(name, value, "a mapping of str to str")
    for key, item in value.items():
        if not isinstance(key, str):
            raise _wrong_type(f"each name in {name}", key, "a string")
        if not isinstance(item, str):
            raise _wrong_type(f"{name}[{key!r}]", item, "a string (write str(...))")
        if not key or "=" in key or "\x00" in key:
            raise OptionValueError(
                f"{name} has the variable name {key!r}, which no environment can"
            )
        if "\x00" in item:
            raise OptionValueError(f"{name}[{key!r}] holds a NUL byte, which no environment can")
    return dict(value)


def check_keep_alive(name: str, value: Any) -> float | str:
    """Validated now; kept as given, since 0 (per call, even with RPC workers) and None
    (not given) mean different things."""
    if isinstance(value, bool) or not (isinstance(value, str) or _is_real(value)):
        raise _wrong_type(name, value, "seconds or a duration like '5m'")
    given: float | str = value if isinstance(value, str) else float(value)
    parse_keep_alive(given, name)
    return given


def check_rpc_servers(name: str, value: Any) -> tuple[str, ...]:
    from . import rpc

    if not isinstance(value, str):
        value = _items(name, value, "'host:port' strings")
        for item in value:
            if not isinstance(item, str):
                raise _wrong_type(f"each of {name}", item, "a 'host:port' string")
    try:
        return rpc.parse_servers(value)
    except ValueError as error:
        raise OptionValueError(f"{name}: {error}") from None


def check_tensor_split(name: str, value: Any) -> tuple[float, ...] | None:
    """Each device's share of the layers, e.g. [3, 1]; llama.cpp's -ts takes them as such."""
    if isinstance(value, str):
        raise OptionTypeError(
            f"{name} must be a list of numbers such as [1, 1], not the string {value!r}"
        )
    items = _items(name, value, "numbers")
    shares = tuple(check_number(f"{name}[{index}]", item, 0.0) for index, item in enumerate(items))
    return shares or None


def check_response_format(name: str, value: Any) -> dict[str, Any]:
    constraint_of(value, None)
    return dict(value)


def constraint_of(
    response_format: Mapping[str, Any] | None, grammar: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """(json_schema, grammar) from the cloud providers' ``response_format`` shape or GBNF."""
    if grammar is not None:
        check_text("grammar", grammar)
    if response_format is None:
        return None, grammar
    if grammar is not None:
        raise OptionValueError("give response_format or grammar, not both")
    if not isinstance(response_format, Mapping):
        raise _wrong_type("response_format", response_format, 'a dict like {"type": "json_object"}')
    kind = response_format.get("type")
    if kind == "text":
        return None, None
    if kind == "json_object":
        return {"type": "object"}, None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            return dict(schema), None
        raise OptionValueError(
            'response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}'
        )
    raise OptionValueError(
        'response_format must be {"type": "json_object"} or {"type": "json_schema", ...}, '
        f"got {response_format!r}"
    )


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
    "n_gpu_layers": _Option(_integer(-1)),
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
}
PER_CALL_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.per_call)

# Other libraries' names for these options (llama-cpp-python, Ollama, Hugging Face,
# OpenAI, Anthropic, llama.cpp's own flags), so a name brought from one of them is
# answered with ours.
ALIASES = {
    "model_path": "model",
    "model_name": "model",
    "context_size": "n_ctx",
    "context_length": "n_ctx",
    "context_window": "n_ctx",
    "n_context": "n_ctx",
    "ctx_size": "n_ctx",
    "num_ctx": "n_ctx",
    "n_threads": "threads",
    "num_thread": "threads",
    "num_threads": "threads",
    "max_token": "max_tokens",
    "max_new_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "n_predict": "max_tokens",
    "stop_sequences": "stop",
    "stop_words": "stop",
    "temp": "temperature",
    "random_seed": "seed",
    "num_gpu": "n_gpu_layers",
    "gpu_layers": "n_gpu_layers",
    "ngl": "n_gpu_layers",
    "request_timeout": "timeout",
    "binary": "binary_path",
    "executable": "binary_path",
    "server_binary": "server_path",
    "concurrency": "max_concurrency",
    "n_parallel": "max_concurrency",
    "extra_argv": "extra_args",
    "args": "extra_args",
    "environment": "env",
    "rpc": "rpc_servers",
    "json_schema": "response_format",
    "template": "chat_template",
}
# llama.cpp settings with no option of their own: they go to the binary in extra_args.
LLAMA_FLAGS = {
    "top_p": "--top-p",
    "top_k": "--top-k",
    "min_p": "--min-p",
    "typical_p": "--typical",
    "repeat_penalty": "--repeat-penalty",
    "repeat_last_n": "--repeat-last-n",
    "presence_penalty": "--presence-penalty",
    "frequency_penalty": "--frequency-penalty",
    "mirostat": "--mirostat",
    "n_batch": "--batch-size",
    "n_ubatch": "--ubatch-size",
    "flash_attn": "--flash-attn",
    "lora_path": "--lora",
}


def _squashed(name: str) -> str:
    """maxTokens, max-tokens and MAX_TOKENS all read as one name."""
    return name.lower().replace("_", "").replace("-", "")


def unexpected_option(where: str, name: str, value: Any, *, per_call: bool) -> OptionTypeError:
    """The TypeError Python would raise, plus the option the caller most likely meant."""
    import difflib

    head = f"{where} got an unexpected keyword argument {name!r}"
    flag = {_squashed(key): flag for key, flag in LLAMA_FLAGS.items()}.get(_squashed(name))
    if flag is not None:
        return OptionTypeError(
            f"{head}; {name} is a llama.cpp flag with no option of its own: pass "
            f"LocalLLM(extra_args=[{flag!r}, {str(value)!r}])"
        )
    known = {_squashed(option): option for option in OPTIONS}
    known.update((_squashed(alias), option) for alias, option in ALIASES.items())
    meant = known.get(_squashed(name))
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
    n_gpu_layers: int | None
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
        from . import defaults

        binary = self.binary_path or str(defaults.default_binary_path())
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
        is_gguf = looks_like_gguf(self.model)
        return LocalConfig(
            binary_path=os.path.expanduser(binary),
            model_path=os.path.expanduser(self.model) if is_gguf and self.model else None,
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


def _environment_default(variable: str, option: str) -> Any:
    """An option's default from the environment, checked as the option is."""
    text = os.environ.get(variable) or None
    return None if text is None else OPTIONS[option].check(variable, text)
