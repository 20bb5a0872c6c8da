"""One call's runs, decided in one place, as httpx's ``Auth.auth_flow`` decides requests.

A call may take more than one run of its transport: a prompt refused for length is sent
again to a warm server with larger slots, or again with its oldest turns left out
(``context_overflow="drop_oldest"``); a reasoning budget runs the thinking, then the
answer. ``call_flow`` is a generator that yields each run (an ``Attempt``) and is sent
what that run came to (an ``Ended``); ``run.run_call`` drives it and runs nothing the
flow did not yield, and the flow never reaches into the run. A refusal the flow cannot
answer is raised from it, and the call ends with it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LLMContextLengthError
from ..request import GenerationRequest
from ..types import MessagePart

if TYPE_CHECKING:
    from .agent import ResolvedAgent

# How often a call is sent again with fewer messages before a refusal stands.
OVERFLOW_ATTEMPTS = 3


@dataclass(frozen=True)
class Prepared:
    """A call's messages made ready to run: what ``LocalLLM`` hands the flow."""

    request: GenerationRequest  # the first run's
    prompt_format: str  # "template" or "flat"
    agent: ResolvedAgent  # tools and reasoning, resolved against the template
    # A reasoning budget's second run: given the thinking and its tokens, the answer's
    # request (None when no tokens are left).
    answer: Callable[[str, int], GenerationRequest | None] | None = None
    # What api_metrics say of the preparation (the framework part served, its constraint).
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One run of the transport.

    ``fresh``: the run starts the reply over (the first run, or one after a refusal,
    which produced nothing), with these messages ready; ``metrics`` what the response
    says of it. Otherwise it continues the reply so far, after ``joint`` (the thinking
    block closed as the model would have closed it).
    """

    request: GenerationRequest
    fresh: Prepared | None
    metrics: dict[str, Any]
    joint: str = ""


@dataclass(frozen=True)
class Ended:
    """What one run came to, sent back to the flow."""

    reply_text: str
    completion_tokens: int
    refusal: LLMContextLengthError | None = None  # refused for length before any reply


Flow = Generator[Attempt, Ended, None]
# The messages to send after a refusal for length (fewer of them), or None.
Shorten = Callable[[list[MessagePart], LLMContextLengthError], list[MessagePart] | None]
# Warm mode's answer to a refusal for length: True when larger slots now take the request.
Grow = Callable[[GenerationRequest, LLMContextLengthError], bool]


def call_flow(
    prepare: Callable[[list[MessagePart]], Prepared],
    messages: list[MessagePart],
    *,
    grow: Grow | None = None,
    shorten: Shorten | None = None,
) -> Flow:
    """The runs of one call of ``messages`` (see the module docstring)."""
    sent, shortened = messages, 0
    prepared = prepare(sent)
    while True:
        left_out = {"messages_left_out": len(messages) - len(sent)} if shortened else {}
        metrics = {**prepared.agent.metrics(), **prepared.metrics, **left_out}
        attempt = Attempt(prepared.request, prepared, metrics)
        ended = yield attempt
        if ended.refusal is not None and grow is not None and grow(attempt.request, ended.refusal):
            ended = yield attempt
        if ended.refusal is None:
            break
        shorter = None
        if shorten is not None and shortened < OVERFLOW_ATTEMPTS:
            shorter = shorten(sent, ended.refusal)
        if shorter is None:
            raise ended.refusal
        sent, shortened = shorter, shortened + 1
        prepared = prepare(sent)
    if prepared.answer is None:
        return
    answer = prepared.answer(ended.reply_text, ended.completion_tokens)
    if answer is None:
        return
    joint = answer.prompt[len(prepared.request.prompt) + len(ended.reply_text) :]
    ended = yield Attempt(answer, None, {}, joint)
    if ended.refusal is not None:
        raise ended.refusal
