"""argv for one per-call run: what each kind of binary is given, and how.

Mirrors what llama.cpp's ``common/arg.cpp`` accepts: llama-completion and llama-cli read
the prompt from a private file (``-f``), with the flags that keep them offline, quiet and
byte-exact; a ``-p`` binary gets the prompt on its command line; ``argv_template`` fills a
caller's own argv. The prompt never travels in argv when the binary can read a file: it
goes through a private file that never touches disk (``private_file``: an anonymous
in-memory file on Linux, a pipe elsewhere) that only the child can open, on every path,
crash and cancel included.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import LLMInvalidRequestError
from ..request import GenerationRequest, OutputShape
from .binary import BinaryInfo, BinaryKind
from .config import llama_environment
from .private_file import PrivateFiles

# Linux refuses a single argument longer than this (MAX_ARG_STRLEN) with E2BIG.
MAX_ARGUMENT_BYTES = 128 * 1024 - 1
# llama-completion prints this when the model ends its reply (an end-of-generation token).
END_OF_TEXT = " [end of text]"
# llama-completion ends its output with an empty line (two newlines) after the reply, and
# prints END_OF_TEXT first when the model ended it: without it, -n or the context did.
COMPLETION_SHAPE = OutputShape(end_markers=(END_OF_TEXT,), closing="\n\n", marks_every_end=True)
# llama-completion's closing statistics on stderr (common_perf_print in common/sampling.cpp;
# llama_perf_context_print in older builds): the total time and tokens, printed after the
# last token through the same logger queue, so a run that printed it printed all its output.
CLOSING_STATISTICS = re.compile(r"total time\s*=\s*[\d.]+ ms /\s*\d+ tokens")
# Flags and settings that may silence those statistics (they are INFO lines): with them
# a missing line proves nothing, and is not looked for.
_LOG_SETTINGS = ("-lv", "--verbosity", "--log-verbosity", "--log-disable")
_LOG_ENVIRONMENT = "LLAMA_ARG_LOG_VERBOSITY"
# llama-cli's chat UI ends a session with this line once the reply is over.
CHAT_CLI_TRAILERS = ("\n\n\nExiting...", "\n\nExiting...", "\n[ Prompt:")
# Renders llama-cli's one user message verbatim, so it completes our prompt exactly as
# llama-completion does instead of wrapping it in a chat template.
PASS_THROUGH_TEMPLATE = "{% for message in messages %}{{ message.content }}{% endfor %}"
# llama-cli shows at most this many bytes of the prompt it echoes.
CHAT_CLI_ECHO_LIMIT = 500


@dataclass(frozen=True)
class ModelOptions:
    """Load-time options: the same for every call of one LocalLLM."""

    binary_path: str
    model_path: str | None
    n_ctx: int | None
    threads: int | None
    offload_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    # For a binary with other flags: argv after the binary, with {prompt}, {prompt_file},
    # {model}, {max_tokens}, {temperature} and {seed} filled in per call.
    argv_template: tuple[str, ...] | None = None


@dataclass
class Launch:
    argv: list[str]
    shape: OutputShape
    # Sent when the reply is complete before the child is: llama.cpp prints its
    # statistics on SIGINT, so its counts stay exact.
    stop_signal: int
    reads_llama_stats: bool
    # What shows a child that exited 0 finished writing: "statistics" (CLOSING_STATISTICS
    # on stderr, llama-completion), "trailer" (the shape's trailer seen on stdout, which
    # completes the reply: llama-cli's "Exiting..."), or "" (nothing is promised).
    closing_proof: str = ""
    # The child's environment (None: ours).
    env: Mapping[str, str] | None = None
    files: PrivateFiles = field(default_factory=PrivateFiles)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """The descriptors the child is given: its private files, nothing else."""
        return self.files.pass_fds

    def feed(self) -> None:
        """Once the child has started: deliver the private files that are pipes."""
        self.files.feed()

    def release(self) -> None:
        """Drop our descriptors of the private files (the child holds its own)."""
        self.files.release()


def build_launch(options: ModelOptions, info: BinaryInfo, request: GenerationRequest) -> Launch:
    # Refuse before any prompt file exists, so a refusal leaves nothing behind.
    _require_constraints(options, info, request)
    if options.argv_template is not None:
        return _templated_plan(options, request)
    if info.kind is BinaryKind.PROMPT_FLAG:
        return _prompt_flag_plan(options, info, request)
    return _llama_plan(options, info, request)


def _llama_plan(options: ModelOptions, info: BinaryInfo, request: GenerationRequest) -> Launch:
    chat_cli = info.kind is BinaryKind.LLAMA_CHAT_CLI
    prompt_text = request.prompt
    template = PASS_THROUGH_TEMPLATE
    if chat_cli and prompt_text.endswith("\n"):
        # llama-cli drops a trailing newline from what it reads; keep it in the template.
        body = prompt_text.rstrip("\n")
        template += "{{ " + repr(prompt_text[len(body) :]).replace("'", '"') + " }}"
        prompt_text = body
    plan = Launch(
        argv=[options.binary_path],
        shape=_chat_cli_shape(prompt_text) if chat_cli else COMPLETION_SHAPE,
        stop_signal=signal.SIGINT,
        reads_llama_stats=True,
        env=llama_environment(options.env),
        closing_proof="trailer" if chat_cli else _statistics_proof(options),
    )
    argv = plan.argv
    if options.model_path:
        argv += ["-m", options.model_path]
    # llama.cpp drops one trailing newline from a prompt file: add one for it to drop.
    file_text = prompt_text + "\n" if prompt_text.endswith("\n") else prompt_text
    argv += ["-f", _private_prompt_file(plan, file_text)]
    argv += _constraint_args(plan, info, request)
    argv += _sampling_args(request)
    argv += _load_args(options)
    wanted = ["--no-escape", "--offline", "--simple-io", "--no-warmup"]
    if chat_cli:
        argv += ["-st", "--jinja", "--chat-template", template, "--no-show-timings"]
        # Verbosity 3 makes the embedded server print its token counts on stderr.
        argv += ["-lv", "3"]
    else:
        wanted += ["--no-display-prompt", "--no-conversation"]
    argv += [flag for flag in wanted if info.accepts(flag)]
    argv += options.extra_args
    return plan


def _statistics_proof(options: ModelOptions) -> str:
    """llama-completion's closing proof: its statistics, unless the caller's flags or
    environment set the log verbosity, which may silence them (then none is asked for)."""
    for arg in options.extra_args:
        if arg.split("=", 1)[0] in _LOG_SETTINGS:
            return ""
    environment = os.environ if options.env is None else options.env
    return "" if _LOG_ENVIRONMENT in environment else "statistics"


def _constraint_args(plan: Launch, info: BinaryInfo, request: GenerationRequest) -> list[str]:
    if request.json_schema is not None:
        schema_text = json.dumps(request.json_schema, ensure_ascii=False)
        return ["--json-schema-file", _private_prompt_file(plan, schema_text)]
    if request.grammar is not None:
        return ["--grammar-file", _private_prompt_file(plan, request.grammar)]
    return []


def _require_constraints(
    options: ModelOptions, info: BinaryInfo, request: GenerationRequest
) -> None:
    llama_argv = options.argv_template is None and info.kind is not BinaryKind.PROMPT_FLAG
    if request.sampling and not llama_argv:
        names = ", ".join(name for name, _ in request.sampling)
        raise LLMInvalidRequestError(
            f"{info.path} is not told {names} (only llama.cpp's own argv carries them); "
            "these options need a llama.cpp binary"
        )
    if not request.constrained:
        return
    flag = "--json-schema-file" if request.json_schema is not None else "--grammar-file"
    # Only llama.cpp's own argv passes the constraint on (-p scripts and templates do not).
    passes_it = options.argv_template is None and info.kind is not BinaryKind.PROMPT_FLAG
    if not (passes_it and info.accepts(flag)):
        raise LLMInvalidRequestError(
            f"{info.path} cannot constrain its output (it does not take {flag} here); "
            "response_format and grammar need a llama.cpp binary"
        )


def _prompt_flag_plan(
    options: ModelOptions, info: BinaryInfo, request: GenerationRequest
) -> Launch:
    check_argument_size(request.prompt)
    argv = [options.binary_path]
    if options.model_path:
        argv += ["-m", options.model_path]
    argv += ["-p", request.prompt, *options.extra_args]
    return Launch(
        argv=argv,
        # Such a binary is never told max_tokens: the reply is cut at the budget instead.
        shape=OutputShape(
            echo=request.prompt, end_markers=(END_OF_TEXT,), token_budget=request.max_tokens
        ),
        stop_signal=signal.SIGTERM,
        reads_llama_stats=False,
        env=options.env,
    )


def _templated_plan(options: ModelOptions, request: GenerationRequest) -> Launch:
    assert options.argv_template is not None
    told_max_tokens = any("{max_tokens}" in part for part in options.argv_template)
    plan = Launch(
        argv=[options.binary_path],
        shape=OutputShape(
            echo=request.prompt, token_budget=None if told_max_tokens else request.max_tokens
        ),
        stop_signal=signal.SIGTERM,
        reads_llama_stats=False,
        env=options.env,
    )
    values = {
        "model": options.model_path or "",
        "max_tokens": "" if request.max_tokens is None else str(request.max_tokens),
        "temperature": "" if request.temperature is None else str(request.temperature),
        "seed": "" if request.seed is None else str(request.seed),
    }
    if any("{prompt}" in part for part in options.argv_template):
        check_argument_size(request.prompt)
        values["prompt"] = request.prompt
    try:
        for part in options.argv_template:
            if "{prompt_file}" in part and "prompt_file" not in values:
                values["prompt_file"] = _private_prompt_file(plan, request.prompt)
            plan.argv.append(part.format_map(values))
    except (KeyError, ValueError, IndexError) as error:
        plan.release()
        known = "{prompt}, {prompt_file}, {model}, {max_tokens}, {temperature}, {seed}"
        raise LLMInvalidRequestError(
            f"argv_template has a placeholder that is not one of {known} "
            f"(write a literal brace as {{{{ or }}}}): {error!r}"
        ) from None
    plan.argv += options.extra_args
    return plan


# The per-call sampling options as llama.cpp's flags (common/arg.cpp).
SAMPLING_FLAGS = {
    "top_p": "--top-p",
    "top_k": "--top-k",
    "min_p": "--min-p",
    "repeat_penalty": "--repeat-penalty",
    "presence_penalty": "--presence-penalty",
    "frequency_penalty": "--frequency-penalty",
}


def _sampling_args(request: GenerationRequest) -> list[str]:
    argv = ["-n", str(request.max_tokens if request.max_tokens is not None else -1)]
    if request.temperature is not None:
        argv += ["--temp", repr(float(request.temperature))]
    if request.seed is not None:
        argv += ["-s", str(request.seed)]
    for name, value in request.sampling:
        argv += [SAMPLING_FLAGS[name], str(value) if isinstance(value, int) else repr(value)]
    return argv


def _load_args(options: ModelOptions) -> list[str]:
    argv: list[str] = []
    if options.n_ctx is not None:
        # llama.cpp rounds the context up to a multiple of 256 but caps its batch at the
        # number given: a prompt between the two aborted llama-completion (get_sub_batch).
        argv += ["-c", str(-(-options.n_ctx // 256) * 256)]
    if options.threads is not None:
        argv += ["-t", str(options.threads)]
    return argv + list(options.offload_args)


def _chat_cli_shape(prompt_text: str) -> OutputShape:
    shown = prompt_text.encode("utf-8")
    echoed = shown[:CHAT_CLI_ECHO_LIMIT] + (
        b" ... (truncated)" if len(shown) > CHAT_CLI_ECHO_LIMIT else b""
    )
    return OutputShape(
        preamble_end="\n> " + echoed.decode("utf-8", errors="replace") + "\n",
        trailer_markers=CHAT_CLI_TRAILERS,
    )


def check_argument_size(prompt: str) -> None:
    size = len(prompt.encode("utf-8"))
    if size > MAX_ARGUMENT_BYTES:
        raise LLMInvalidRequestError(
            f"the prompt is {size} bytes, over the {MAX_ARGUMENT_BYTES}-byte limit Linux puts on "
            "one command-line argument; this binary takes the prompt only on its command line "
            "(use llama.cpp's llama-completion, which reads it from a private file)"
        )


def _private_prompt_file(plan: Launch, text: str) -> str:
    return plan.files.add(text.encode("utf-8"))
