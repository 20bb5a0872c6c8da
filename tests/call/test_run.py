"""call.run: what a response's api_metrics say of the run."""

from __future__ import annotations

from jazzmine.local import LocalLLM
from jazzmine.local.mock import MockReply, MockTransport
from jazzmine.local.request import GenerationRequest, RunOutcome


def test_the_share_of_the_prompt_taken_from_the_cache_is_reported() -> None:
    def handler(request: GenerationRequest) -> MockReply:
        outcome = RunOutcome(
            exit_code=0,
            prompt_tokens=200,
            completion_tokens=3,
            details={"prompt_tokens_reused": 170, "prompt_tokens_evaluated": 30},
        )
        return MockReply(["hi"], outcome=outcome)

    llm = LocalLLM(transport=MockTransport(handler), prompt_format="flat")
    metrics = llm.generate([{"role": "user", "content": "x"}]).api_metrics
    assert metrics is not None and metrics["prompt_cache_share"] == 0.85


def test_no_share_is_claimed_where_no_cache_was_counted() -> None:
    llm = LocalLLM(transport=MockTransport(lambda request: MockReply(["hi"])), prompt_format="flat")
    metrics = llm.generate([{"role": "user", "content": "x"}]).api_metrics
    assert metrics is not None and "prompt_cache_share" not in metrics
