"""LocalLLM, the facade, on the real llama.cpp build: what a caller of each method gets.

generate, stream and their async twins on the default model (SmolLM2-135M-Instruct, in
its ChatML template) and the base model (Gemma 3 270M, given the spec's flattened
``User:/Assistant:`` prompt, which it continues into the next turn unless stopped):
the reply alone, exact usage, max_tokens, stop sequences, whole characters, the errors
of a missing binary or an unusable model, and close at any time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.real_calls import CHATTY, LISTING, QUESTION, deterministic

from jazzmine.local import LLMInternalError, LocalLLM, MessagePart


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
