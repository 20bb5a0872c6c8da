"""Streams that keep their response, on the scripted transport: no build, no model."""

from __future__ import annotations

import asyncio
import time

import pytest

from jazzmine.local import (
    LLMInternalError,
    LLMTimeoutError,
    LocalLLM,
    MessagePart,
    MockReply,
    MockTransport,
    RunOutcome,
)

HELLO = [MessagePart("user", "Hello")]


def scripted(*chunks: str, **fields: object) -> LocalLLM:
    return LocalLLM(transport=MockTransport(lambda request: MockReply(chunks, **fields)))  # type: ignore[arg-type]


def test_a_stream_iterated_to_its_end_has_the_response_generate_gives() -> None:
    counts = RunOutcome(exit_code=0, prompt_tokens=7, completion_tokens=3)
    llm = scripted("Hi", " there", "!", outcome=counts)
    stream = llm.stream(HELLO)
    assert "".join(stream) == "Hi there!"
    streamed = stream.response
    generated = llm.generate(HELLO)
    assert streamed.text == generated.text == "Hi there!"
    assert streamed.usage == generated.usage
    assert (streamed.usage.prompt_tokens, streamed.usage.completion_tokens) == (7, 3)
    assert streamed.finish_reason == generated.finish_reason == "stop"
    assert streamed.api_metrics is not None and streamed.api_metrics["usage_source"] == "reported"


def test_the_response_is_not_there_before_the_end() -> None:
    stream = scripted("a", "b").stream(HELLO)
    with pytest.raises(RuntimeError, match="not been iterated to its end"):
        _ = stream.response
    next(stream)
    with pytest.raises(RuntimeError):
        _ = stream.response
    list(stream)
    assert stream.response.text == "ab"


def test_a_stop_sequence_gives_finish_reason_stop_and_names_it() -> None:
    llm = scripted("one two ", "THREE four")
    stream = llm.stream(HELLO, stop=["THREE"])
    assert "".join(stream) == "one two"
    assert stream.response.finish_reason == "stop"
    assert stream.response.api_metrics is not None
    assert stream.response.api_metrics["stopped_by"] == "THREE"


def test_an_async_stream_keeps_its_response_too() -> None:
    counts = RunOutcome(exit_code=0, prompt_tokens=2, completion_tokens=2)
    llm = scripted("Hi", " there", outcome=counts)

    async def main() -> tuple[str, str, int]:
        stream = llm.astream(HELLO)
        text = "".join([piece async for piece in stream])
        generated = await llm.agenerate(HELLO)
        return text, generated.text, stream.response.usage.completion_tokens

    assert asyncio.run(main()) == ("Hi there", "Hi there", 2)


def test_a_failure_mid_stream_carries_the_partial_text_in_both_modes() -> None:
    crash = LLMInternalError("the model process was killed by SIGSEGV", exit_code=-11)
    llm = scripted("Hello ", "from ", "the model", error=crash)
    with pytest.raises(LLMInternalError) as caught:
        list(llm.stream(HELLO))
    assert caught.value.partial_text == "Hello from the model"
    assert caught.value.exit_code == -11

    async def main() -> LLMInternalError:
        with pytest.raises(LLMInternalError) as caught_async:
            async for _ in llm.astream(HELLO):
                pass
        return caught_async.value

    assert asyncio.run(main()).partial_text == "Hello from the model"


def test_a_timeout_keeps_what_was_said() -> None:
    llm = LocalLLM(
        timeout=0.3,
        transport=MockTransport(lambda request: MockReply(["a", "b", "c", "d"], delay=0.2)),
    )
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        llm.generate(HELLO)
    assert time.monotonic() - started < 2
    assert caught.value.partial_text == "a"


def test_closing_a_stream_early_ends_the_run() -> None:
    transport = MockTransport(lambda request: MockReply(["a"] * 100, delay=0.05))
    llm = LocalLLM(transport=transport)
    with llm.stream(HELLO) as stream:
        assert next(stream) == "a"
    started = time.monotonic()

    async def main() -> None:
        stream = llm.astream(HELLO)
        assert await stream.__anext__() == "a"
        await stream.aclose()

    asyncio.run(main())
    assert time.monotonic() - started < 1


def test_generate_is_the_stream_joined() -> None:
    llm = scripted("  spaced reply \n")
    assert llm.generate(HELLO).text == "".join(llm.stream(HELLO)) == "spaced reply"
