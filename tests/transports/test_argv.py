"""argv for each kind of binary, built without running anything."""

from __future__ import annotations

import os
import signal

import pytest

from jazzmine.local import GenerationRequest, LLMInvalidRequestError
from jazzmine.local.transports.argv import (
    END_OF_TEXT,
    MAX_ARGUMENT_BYTES,
    Launch,
    ModelOptions,
    build_launch,
)
from jazzmine.local.transports.binary import BinaryInfo, BinaryKind

COMPLETION_FLAGS = frozenset(
    {
        "-f",
        "--file",
        "--no-conversation",
        "--no-display-prompt",
        "--no-escape",
        "--offline",
        "--simple-io",
        "--no-warmup",
        "--json-schema-file",
        "--grammar-file",
    }
)


def request(prompt: str = "User: hi\nAssistant: ", **fields: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": prompt,
        "max_tokens": 16,
        "temperature": 0.0,
        "seed": 7,
        "stop_sequences": (),
    }
    values.update(fields)
    return GenerationRequest(**values)  # type: ignore[arg-type]


def options(**fields: object) -> ModelOptions:
    values: dict[str, object] = {
        "binary_path": "/opt/llama-completion",
        "model_path": "/m/model.gguf",
        "n_ctx": 512,
        "threads": 2,
    }
    values.update(fields)
    return ModelOptions(**values)  # type: ignore[arg-type]


def completion() -> BinaryInfo:
    return BinaryInfo("/opt/llama-completion", BinaryKind.LLAMA_COMPLETION, COMPLETION_FLAGS)


def test_llama_completion_reads_the_prompt_from_a_private_file_never_argv() -> None:
    plan = build_launch(options(), completion(), request("secret prompt"))
    try:
        assert not any("secret prompt" in part for part in plan.argv)
        prompt_file = plan.argv[plan.argv.index("-f") + 1]
        assert prompt_file.startswith(PRIVATE_NAMES)
        fd = int(prompt_file.rsplit("/", 1)[1])
        assert fd in plan.pass_fds
        assert read_private(plan, prompt_file) == b"secret prompt"
        assert plan.argv[plan.argv.index("-m") + 1] == "/m/model.gguf"
        argv = plan.argv
        for flag, value in (
            ("-n", "16"),
            ("--temp", "0.0"),
            ("-s", "7"),
            ("-c", "512"),
            ("-t", "2"),
        ):
            assert argv[argv.index(flag) + 1] == value
        for flag in ("--no-escape", "--offline", "--no-display-prompt", "--no-conversation"):
            assert flag in argv
        assert plan.stop_signal == signal.SIGINT and plan.reads_llama_stats
        assert plan.shape.end_markers == (END_OF_TEXT,)
    finally:
        plan.release()
    assert plan.pass_fds and all(not _is_open(fd) for fd in plan.pass_fds)


# memfd (Linux) or a pipe (the portable path, JAZZMINE_PORTABLE=1).
PRIVATE_NAMES = ("/proc/self/fd/", "/dev/fd/")


def read_private(plan: Launch, name: str) -> bytes:
    """What the child would read from the private file ``name``."""
    fd = int(name.rsplit("/", 1)[1])
    if name.startswith("/proc/self/fd/"):
        return os.pread(fd, 1 << 20, 0)
    plan.feed()  # a pipe: our writer thread fills it while we read, as the child would
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_trailing_newline_survives_llama_cpps_dropping_one() -> None:
    plan = build_launch(options(), completion(), request("line\n"))
    try:
        assert read_private(plan, plan.argv[plan.argv.index("-f") + 1]) == b"line\n\n"
    finally:
        plan.release()


def test_flags_the_binary_does_not_know_are_left_out() -> None:
    bare = BinaryInfo("/opt/old", BinaryKind.LLAMA_COMPLETION, frozenset({"-f", "--file"}))
    plan = build_launch(options(), bare, request())
    try:
        assert "--no-escape" not in plan.argv and "--offline" not in plan.argv
    finally:
        plan.release()


def test_a_constraint_goes_in_its_own_private_file() -> None:
    schema = {"type": "object"}
    plan = build_launch(options(), completion(), request(json_schema=schema))
    try:
        path = plan.argv[plan.argv.index("--json-schema-file") + 1]
        assert read_private(plan, path) == b'{"type": "object"}'
    finally:
        plan.release()


def test_a_p_binary_gets_the_prompt_on_its_command_line_and_may_echo_it() -> None:
    info = BinaryInfo("/opt/script", BinaryKind.PROMPT_FLAG, frozenset({"-p"}))
    plan = build_launch(options(binary_path="/opt/script"), info, request("hello"))
    assert plan.argv[plan.argv.index("-p") + 1] == "hello"
    assert plan.shape.echo == "hello" and plan.stop_signal == signal.SIGTERM
    assert not plan.reads_llama_stats and not plan.pass_fds


def test_a_p_binary_cannot_take_a_prompt_over_the_argument_limit() -> None:
    info = BinaryInfo("/opt/script", BinaryKind.PROMPT_FLAG, frozenset({"-p"}))
    with pytest.raises(LLMInvalidRequestError, match="limit Linux puts"):
        build_launch(options(), info, request("x" * (MAX_ARGUMENT_BYTES + 1)))


def test_a_p_binary_cannot_constrain_its_output_and_no_file_is_left() -> None:
    info = BinaryInfo("/opt/script", BinaryKind.PROMPT_FLAG, frozenset({"-p"}))
    with pytest.raises(LLMInvalidRequestError, match="cannot constrain"):
        build_launch(options(), info, request(grammar='root ::= "a"'))


def test_argv_template_fills_every_placeholder() -> None:
    template = (
        "--in",
        "{prompt}",
        "--weights",
        "{model}",
        "--n",
        "{max_tokens}",
        "--t",
        "{temperature}",
        "--seed",
        "{seed}",
    )
    info = BinaryInfo("/opt/other", BinaryKind.PROMPT_FLAG, frozenset())
    plan = build_launch(options(argv_template=template), info, request("hi"))
    assert plan.argv[1:] == [
        "--in",
        "hi",
        "--weights",
        "/m/model.gguf",
        "--n",
        "16",
        "--t",
        "0.0",
        "--seed",
        "7",
    ]


def test_argv_template_with_a_prompt_file() -> None:
    info = BinaryInfo("/opt/other", BinaryKind.PROMPT_FLAG, frozenset())
    plan = build_launch(options(argv_template=("--file", "{prompt_file}")), info, request("hi"))
    try:
        assert plan.argv[2].startswith(PRIVATE_NAMES)
        assert read_private(plan, plan.argv[2]) == b"hi"
    finally:
        plan.release()


def test_extra_args_come_last() -> None:
    plan = build_launch(options(extra_args=("--top-k", "5")), completion(), request())
    try:
        assert plan.argv[-2:] == ["--top-k", "5"]
    finally:
        plan.release()
