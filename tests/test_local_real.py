"""LocalLLM end to end on the real llama.cpp build, the default model and the base model.

The default model (SmolLM2-135M-Instruct) is given its own ChatML template; the base
model (Gemma 3 270M, no template) gets the spec's flattened ``User:/Assistant:`` prompt,
so the tests of that format, its echo and its next-turn markers run on the base model.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from probes import children_running, environment_of

from jazzmine.local import (
    BaseLLM,
    LLMInternalError,
    LLMResponse,
    LLMUsage,
    LocalLLM,
    MessagePart,
    estimate_tokens,
)
from jazzmine.local import binary as binaries

QUESTION = [MessagePart("user", "What is the capital of France?")]
# A prompt the models answer at length, for cutting with stop sequences.
LISTING = [MessagePart("user", "List the planets of the solar system.")]
COLOURS = [MessagePart("user", "What are the three primary colours?")]
# A conversation after which the base model goes on to write the user's next turn.
CHATTY = [
    MessagePart("user", "Say hello."),
    MessagePart("assistant", "Hello! How can I help you today?"),
    MessagePart("user", "Thanks, bye."),
]


def deterministic(binary: str, model: str, **options: object) -> LocalLLM:
    options.setdefault("max_tokens", 24)
    return LocalLLM(binary_path=binary, model=model, temperature=0.0, seed=7, **options)  # type: ignore[arg-type]


def test_public_names_match_the_published_api() -> None:
    assert issubclass(LocalLLM, BaseLLM)
    response = LLMResponse(text="x", usage=LLMUsage(1, 2, 3), model="m")
    assert (response.latency_ms, response.finish_reason, response.raw, response.api_metrics) == (
        None,
        None,
        None,
        None,
    )
    assert MessagePart(role="user", content="hi").content == "hi"
    assert estimate_tokens("") == 0 and estimate_tokens("abcdefgh") == 2


def test_format_prompt_is_the_spec_flattening() -> None:
    llm = LocalLLM(binary_path="/bin/true", model="llama-3-8b", prompt_format="flat")
    prompt = llm.build_request(
        [
            MessagePart("system", "Be brief."),
            MessagePart("user", "Hi"),
            MessagePart("assistant", "Hello"),
        ]
    ).prompt
    assert prompt == "System: Be brief.\nUser: Hi\nAssistant: Hello\nAssistant: "
    assert llm.model == "llama-3-8b"


@pytest.mark.parametrize("which", ["default", "base"])
def test_generate_returns_the_reply_alone_with_exact_usage(
    completion_bin: str, model_path: str, base_model_path: str, which: str
) -> None:
    model_path = model_path if which == "default" else base_model_path
    response = deterministic(completion_bin, model_path).generate(QUESTION)
    assert response.text and response.text == response.text.strip()
    assert "Assistant:" not in response.text and "capital of France?" not in response.text
    assert "<|im_" not in response.text
    assert "[end of text]" not in response.text and "llama" not in response.text
    assert response.finish_reason in ("stop", "length")
    assert response.api_metrics is not None
    assert response.api_metrics["usage_source"] == "reported"
    assert response.api_metrics["binary_kind"] == "llama-completion"
    assert response.usage.prompt_tokens > 5
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.latency_ms is not None and response.latency_ms > 0
    assert response.model == model_path  # the label as given, as in 0.1.x


def test_max_tokens_limits_the_reply_and_reports_length(
    completion_bin: str, model_path: str
) -> None:
    response = deterministic(completion_bin, model_path, max_tokens=5).generate(QUESTION)
    assert response.usage.completion_tokens == 5
    assert response.finish_reason == "length"


def test_stream_pieces_join_to_the_generated_text(completion_bin: str, model_path: str) -> None:
    llm = deterministic(completion_bin, model_path, max_tokens=32)
    text = llm.generate(QUESTION).text
    pieces = list(llm.stream(QUESTION))
    assert "".join(pieces) == text
    assert len(pieces) >= 8, "token-sized pieces, not one block"

    async def both() -> tuple[str, list[str]]:
        reply = await llm.agenerate(QUESTION)
        return reply.text, [piece async for piece in llm.astream(QUESTION)]

    async_text, async_pieces = asyncio.run(both())
    assert async_text == text
    assert "".join(async_pieces) == text


def test_the_base_model_never_writes_the_next_user_turn(
    completion_bin: str, base_model_path: str
) -> None:
    llm = deterministic(completion_bin, base_model_path, max_tokens=120)
    response = llm.generate(CHATTY)
    assert response.api_metrics is not None
    assert response.api_metrics["stopped_by"] in ("\nUser:", "\nSystem:", "\nAssistant:")
    assert response.finish_reason == "stop"
    assert "User:" not in response.text
    # The binary was told to stop (SIGINT), so it still reported exact counts.
    assert response.api_metrics["usage_source"] == "reported"


def test_caller_stop_sequences_end_the_reply_in_every_method(
    completion_bin: str, model_path: str
) -> None:
    llm = deterministic(completion_bin, model_path, max_tokens=40)
    full = llm.generate(LISTING).text
    words = full.split()
    assert len(words) > 4, full
    stop_word = words[3]
    expected = full[: full.index(stop_word)].rstrip()
    stopped = llm.generate(LISTING, stop=[stop_word])
    assert stopped.text == expected and stopped.finish_reason == "stop"
    assert "".join(llm.stream(LISTING, stop=[stop_word])) == expected

    async def both() -> tuple[str, str]:
        reply = await llm.agenerate(LISTING, stop=[stop_word])
        return reply.text, "".join([p async for p in llm.astream(LISTING, stop=[stop_word])])

    assert asyncio.run(both()) == (expected, expected)
    # A stop given to the constructor works the same way.
    assert (
        deterministic(completion_bin, model_path, max_tokens=40, stop=[stop_word])
        .generate(LISTING)
        .text
        == expected
    )


def test_multibyte_output_streams_whole_characters(completion_bin: str, model_path: str) -> None:
    llm = deterministic(completion_bin, model_path, max_tokens=40)
    messages = [MessagePart("user", "日本の首都はどこですか？東京について教えてください。")]
    pieces = list(llm.stream(messages))
    text = "".join(pieces)
    assert any(ord(ch) > 0x7F for ch in text), text
    assert "\ufffd" not in text


def test_llama_cli_chat_ui_returns_the_same_reply_alone(
    cli_bin: str, completion_bin: str, model_path: str
) -> None:
    expected = deterministic(completion_bin, model_path).generate(QUESTION).text
    response = deterministic(cli_bin, model_path).generate(QUESTION)
    assert response.api_metrics is not None
    assert response.api_metrics["binary_kind"] == "llama-cli"
    assert response.text == expected
    for chrome in ("available commands", "Exiting", "> User:", "build", "t/s"):
        assert chrome not in response.text
    assert response.usage.completion_tokens > 0
    assert response.api_metrics["usage_source"] == "reported"
    assert "".join(deterministic(cli_bin, model_path).stream(QUESTION)) == expected


def test_a_users_p_script_works_and_its_echo_is_removed(
    make_script: Callable[..., str], completion_bin: str, base_model_path: str
) -> None:
    # A user's wrapper in the spec's convention: takes -p PROMPT, and shows the prompt.
    # It gets the flattened prompt, so it runs the base model, which continues it.
    script = make_script(
        "my-llama.sh",
        f"""
        [ "$1" = "--help" ] && {{ echo "usage: my-llama.sh -p PROMPT"; exit 0; }}
        exec {completion_bin} -m {base_model_path} -n 12 --temp 0 -c 512 -no-cnv --simple-io \\
            --offline "$@"
        """,
        python=False,
    )
    llm = LocalLLM(binary_path=script, model="my-model")
    assert binaries.probe(script).kind is binaries.BinaryKind.PROMPT_FLAG
    response = llm.generate(QUESTION)
    assert response.text
    assert "capital of France?" not in response.text
    assert response.api_metrics is not None and response.api_metrics["usage_source"] == "estimated"
    assert response.usage.prompt_tokens == estimate_tokens(llm.build_request(QUESTION).prompt)


def test_a_binary_with_other_flags_is_configured_in_python(
    make_script: Callable[..., str], completion_bin: str, base_model_path: str
) -> None:
    # A program of the user's is given the flattened prompt: the base model's format.
    script = make_script(
        "input-llm",
        f"""
        import os, sys
        args = sys.argv[1:]
        if args == ["--help"]:
            print("usage: input-llm --input TEXT [--tokens N]"); sys.exit(0)
        text = args[args.index("--input") + 1]
        n = args[args.index("--tokens") + 1] if "--tokens" in args else "8"
        os.execv({completion_bin!r}, [{completion_bin!r}, "-m", {base_model_path!r}, "-p", text,
                 "-n", n,
                 "--temp", "0", "-c", "512", "-no-cnv", "--no-display-prompt", "--simple-io"])
        """,
    )
    by_flag = LocalLLM(binary_path=script, model="x", prompt_flag="--input").generate(QUESTION)
    templated = LocalLLM(
        binary_path=script,
        model="x",
        max_tokens=8,
        argv_template=["--input", "{prompt}", "--tokens", "{max_tokens}"],
    ).generate(QUESTION)
    assert by_flag.text and by_flag.text == templated.text


def test_binaries_are_told_apart_by_help_and_probed_once(
    make_script: Callable[..., str], tmp_path: Path, completion_bin: str, cli_bin: str
) -> None:
    log = tmp_path / "probes.log"
    script = make_script(
        "counting",
        f"""
        import sys
        open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
        print("usage: counting -p PROMPT")
        print("Reply")
        """,
    )
    llm = LocalLLM(binary_path=script, model="x")
    for _ in range(3):
        llm.generate(QUESTION)
    calls = log.read_text().splitlines()
    assert calls.count("--help") == 1 and sum(c.startswith("-p ") for c in calls) == 3
    assert binaries.probe(completion_bin).kind is binaries.BinaryKind.LLAMA_COMPLETION
    assert binaries.probe(cli_bin).kind is binaries.BinaryKind.LLAMA_CHAT_CLI


def test_options_reach_llama_cpp_as_its_own_flags(
    make_script: Callable[..., str], tmp_path: Path, completion_bin: str, model_path: str
) -> None:
    log = tmp_path / "argv.json"
    wrapper = make_script(
        "recording-llama",
        f"""
        import json, os, sys
        if sys.argv[1:] != ["--help"]:
            json.dump(sys.argv[1:], open({str(log)!r}, "w"))
        os.execv({completion_bin!r}, [{completion_bin!r}, *sys.argv[1:]])
        """,
    )
    llm = LocalLLM(
        binary_path=wrapper,
        model=model_path,
        temperature=0.25,
        max_tokens=3,
        seed=11,
        n_ctx=640,
        threads=1,
        n_gpu_layers=0,
        extra_args=["--top-k", "5"],
    )
    response = llm.generate(QUESTION)
    argv = json.loads(log.read_text())
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert pairs["--temp"] == "0.25" and pairs["-n"] == "3" and pairs["-s"] == "11"
    assert pairs["-c"] == "640" and pairs["-t"] == "1" and pairs["-ngl"] == "0"
    assert pairs["--top-k"] == "5" and pairs["-m"] == model_path
    assert "--offline" in argv and "--no-escape" in argv
    assert response.usage.completion_tokens == 3


def test_default_binary_and_model(real_build: tuple[Path, Path]) -> None:
    llm = LocalLLM(max_tokens=4)
    assert llm.binary_path == str(real_build[0] / "llama-completion")
    response = llm.generate(QUESTION)
    assert response.usage.completion_tokens == 4
    assert llm.model_path == str(real_build[1])
    assert real_build[1].name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_default_model_answers_the_question(real_build: tuple[Path, Path]) -> None:
    # An instruction-tuned model in its own chat format answers; a base model given the
    # same question as text tends to go on with more questions. Both modes, greedy.
    replies = []
    for keep_alive in (None, 60):
        llm = LocalLLM(keep_alive=keep_alive, max_tokens=60, seed=1)
        try:
            replies.append(llm.generate(COLOURS))
        finally:
            llm.close()
    for reply in replies:
        assert reply.api_metrics is not None
        assert reply.api_metrics["prompt_format"] == "template"
        text = reply.text.lower()
        assert sum(colour in text for colour in ("red", "blue", "yellow", "green")) >= 2, text
        assert "?" not in text.split(".")[0], text  # it does not open with a question
        assert "<|im_" not in text and "user" not in text
    assert replies[0].api_metrics["transport"] != replies[1].api_metrics["transport"]  # type: ignore[index]
    assert replies[0].text == replies[1].text


def test_environment_overrides_the_defaults(
    monkeypatch: pytest.MonkeyPatch, cli_bin: str, model_path: str, tmp_path: Path
) -> None:
    copy = tmp_path / "model-copy.gguf"
    copy.symlink_to(model_path)
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", cli_bin)
    monkeypatch.setenv("JAZZMINE_MODEL", str(copy))
    llm = LocalLLM(max_tokens=3)
    assert llm.binary_path == cli_bin
    response = llm.generate(QUESTION)
    assert llm.model_path == str(copy)
    assert response.api_metrics is not None and response.api_metrics["binary_kind"] == "llama-cli"


@pytest.mark.parametrize("keep_alive", [None, "1m"], ids=["per-call", "warm"])
@pytest.mark.parametrize(
    ("content", "cause"),
    [(None, "does not exist"), (b"GGUF" + bytes(12), "is not a usable GGUF file")],
    ids=["missing", "truncated"],
)
def test_an_unusable_gguf_raises_internal_error_naming_the_file(
    completion_bin: str,
    tmp_path: Path,
    keep_alive: str | None,
    content: bytes | None,
    cause: str,
) -> None:
    weights = tmp_path / "weights.gguf"
    if content is not None:
        weights.write_bytes(content)
    llm = LocalLLM(
        binary_path=completion_bin, model=str(weights), max_tokens=2, keep_alive=keep_alive
    )
    try:
        with pytest.raises(LLMInternalError) as caught:
            llm.generate(QUESTION)
    finally:
        llm.close()
    assert caught.value.exit_code not in (None, 0)
    assert f"the model file {weights} {cause}" in str(caught.value)
    # llama-completion's logger thread is not flushed at exit, so its own lines about the
    # file are lost on some runs: the message cannot lean on them (test_faults checks
    # that whatever a binary prints on stderr is carried whole).


def test_missing_and_non_executable_binaries_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LocalLLM(binary_path=str(tmp_path / "nope"), model="x").generate(QUESTION)
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program")
    with pytest.raises(PermissionError):
        LocalLLM(binary_path=str(plain), model="x").generate(QUESTION)

    async def run() -> None:
        await LocalLLM(binary_path=str(tmp_path / "nope"), model="x").agenerate(QUESTION)

    with pytest.raises(FileNotFoundError):
        asyncio.run(run())


def test_close_is_safe_at_any_time(completion_bin: str, model_path: str) -> None:
    llm = deterministic(completion_bin, model_path, max_tokens=2)
    llm.close()
    llm.close()
    with llm:
        assert llm.generate(QUESTION).usage.completion_tokens == 2
    llm.close()

    async def run() -> None:
        async with llm:
            await llm.agenerate(QUESTION)
        await llm.aclose()

    asyncio.run(run())
    assert llm.health_check()
    assert not LocalLLM(binary_path="/nonexistent/llama", model="x").health_check()


def _jazzmine(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jazzmine.local.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.real
def test_cli_run_streams_a_reply() -> None:
    done = _jazzmine("run", "Name a colour.", "--max-tokens", "8", "--temperature", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.real
def test_cli_chat_keeps_history() -> None:
    for keep_alive in ("5m", "0"):  # warm (the default) and a process per turn
        done = _jazzmine(
            "chat",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--keep-alive",
            keep_alive,
            stdin="Hello\nAnd again\n",
        )
        assert done.returncode == 0, done.stderr
        assert len([line for line in done.stdout.splitlines() if line.strip()]) >= 2


def test_cli_doctor_json(completion_bin: str, model_path: str) -> None:
    done = _jazzmine("doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert report["ok"] is True
    assert report["binary"] == completion_bin and report["model"] == model_path
    assert report["binary_kind"] == "llama-completion" and "version" in report["binary_version"]
    assert report["server"] == {"found": True, "starts": True}
    broken = _jazzmine("doctor", "--json", "--binary", "/nonexistent/llama")
    assert broken.returncode == 1 and json.loads(broken.stdout)["ok"] is False
    assert os.path.exists(model_path)


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, "1000"), ({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "passive"}, None)],
    ids=["default", "caller-spin", "caller-policy"],
)
def test_llama_cpp_children_get_a_short_openmp_spin_unless_the_caller_chose(
    completion_bin: str,
    model_path: str,
    env: dict[str, str] | None,
    expected: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        max_tokens=400,
        extra_args=["--ignore-eos"],
        env=env,
    )
    stream = llm.stream(QUESTION)
    try:
        next(stream)
        (pid,) = children_running(completion_bin)
        seen = environment_of(pid)
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert seen.get("GOMP_SPINCOUNT") == expected
    if env is not None:
        assert set(seen) - set(env) <= {"GOMP_SPINCOUNT"}
