"""The package's public API: the names importable from ``jazzmine.local``, as published."""

from __future__ import annotations

from jazzmine.local import BaseLLM, LLMResponse, LLMUsage, LocalLLM, MessagePart, estimate_tokens


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
