"""``context_overflow="drop_oldest"``: the policy (``prompt.overflow.drop_oldest``) on its own,
the retry around a call and a stream on a scripted transport, and end to end on the real
llama-completion with a small context, where the real refusal drives the retry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jazzmine.local import LLMContextLengthError, LocalLLM, MessagePart, MockReply, MockTransport
from jazzmine.local.errors import context_length_error
from jazzmine.local.prompt.overflow import drop_oldest
from jazzmine.local.request import GenerationRequest

SYSTEM = MessagePart("system", "You answer in one word.")


def conversation(turns: int, words: int = 40) -> list[MessagePart]:
    """A system message, ``turns`` answered turns, then a new question."""
    messages = [SYSTEM]
    for turn in range(turns):
        messages.append(MessagePart("user", f"question {turn} " + "word " * words))
        messages.append(MessagePart("assistant", f"answer {turn} " + "word " * words))
    messages.append(MessagePart("user", "And now?"))
    return messages


def tool_exchange(call_id: str, result_words: int) -> list[MessagePart]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "look_up", "arguments": '{"what": "x"}'},
    }
    return [
        MessagePart("assistant", "", tool_calls=[call]),
        MessagePart("tool", "result " * result_words, tool_call_id=call_id, name="look_up"),
    ]


# ---------- the policy ----------
def test_the_oldest_turns_go_first_and_the_system_and_last_question_stay() -> None:
    messages = conversation(turns=6)
    # The whole prompt counted 1,000 tokens against 600: about half must go.
    kept = drop_oldest(messages, prompt_tokens=1000, context_size=600, max_tokens=100)
    assert kept is not None
    assert kept[0] == SYSTEM and kept[-1] == messages[-1]
    # What is left is the newest part of the conversation, whole turns in order.
    assert kept[1:] == messages[len(messages) - len(kept) + 1 :]
    assert kept[1].role == "user" and 1 < len(kept) < len(messages)


def test_it_leaves_out_no_more_than_needed() -> None:
    messages = conversation(turns=6)
    a_little = drop_oldest(messages, prompt_tokens=1000, context_size=950, max_tokens=10)
    a_lot = drop_oldest(messages, prompt_tokens=1000, context_size=400, max_tokens=10)
    assert a_little is not None and a_lot is not None
    assert len(a_little) == len(messages) - 2  # one turn: a user message and its answer
    assert len(a_lot) < len(a_little)


def test_the_reply_room_counts_against_the_budget() -> None:
    messages = conversation(turns=6)
    short_reply = drop_oldest(messages, prompt_tokens=1000, context_size=900, max_tokens=10)
    long_reply = drop_oldest(messages, prompt_tokens=1000, context_size=900, max_tokens=400)
    assert short_reply is not None and long_reply is not None
    assert len(long_reply) < len(short_reply)


def test_none_when_the_system_and_the_last_question_alone_do_not_fit() -> None:
    messages = [SYSTEM, MessagePart("user", "hi"), MessagePart("user", "word " * 500)]
    assert drop_oldest(messages, prompt_tokens=1000, context_size=300) is None
    # Nothing to leave out at all: also None, never the same list back.
    assert drop_oldest([MessagePart("user", "word " * 500)], 1000, 300) is None


def test_a_system_message_in_the_middle_stays_where_it_stands() -> None:
    note = MessagePart("system", "From now on, answer in French.")
    late = MessagePart("system", "The user is in a hurry.")
    messages = conversation(turns=6)
    messages[5:5] = [note]  # between the second turn's question and its answer
    messages[-1:-1] = [late]  # just before the last question
    kept = drop_oldest(messages, prompt_tokens=1000, context_size=500, max_tokens=50)
    assert kept is not None and len(kept) < len(messages) - 4
    # both notes are kept, in their order, and the turn around the first one went
    assert [m for m in kept if m.role == "system"] == [SYSTEM, note, late]
    assert kept[:2] == [SYSTEM, note] and messages[4] not in kept and messages[6] not in kept
    assert kept[-2:] == [late, messages[-1]]
    # what else is left is the newest whole turns, in order, roles alternating
    rest = [m for m in kept if m.role != "system"]
    assert rest == [m for m in messages if m.role != "system"][-len(rest) :]
    assert [m.role for m in rest[:-1]] == ["user", "assistant"] * (len(rest) // 2)
    # a system message counts against the room like any other: too big, nothing fits
    huge = [SYSTEM, MessagePart("user", "hi"), MessagePart("system", "x " * 900), *messages[-1:]]
    assert drop_oldest(huge, prompt_tokens=1000, context_size=600, max_tokens=10) is None


def test_a_refused_call_keeps_a_system_message_from_the_middle() -> None:
    transport, prompts = refusing_transport(context_tokens=300)
    llm = LocalLLM(transport=transport, max_tokens=20, context_overflow="drop_oldest")
    messages = conversation(turns=6)
    messages[3:3] = [MessagePart("system", "Say 'fits' when unsure.")]
    response = llm.generate(messages)
    assert response.text == "fits" and len(prompts) >= 2
    assert "Say 'fits' when unsure." in prompts[-1] and "question 0" not in prompts[-1]


def test_a_tool_call_and_its_answer_go_together() -> None:
    messages = [
        SYSTEM,
        MessagePart("user", "first"),
        *tool_exchange("a", 200),
        MessagePart("assistant", "done"),
        MessagePart("user", "second"),
        *tool_exchange("b", 200),
        *tool_exchange("c", 10),
    ]
    kept = drop_oldest(messages, prompt_tokens=900, context_size=500, max_tokens=50)
    assert kept is not None
    ids = [m.tool_call_id for m in kept if m.role == "tool"]
    calls = [m.tool_calls[0]["id"] for m in kept if m.tool_calls]
    # Every answer kept still has its call, and the other way round.
    assert ids == calls
    # The exchange in progress keeps its last round (the model answers it).
    assert kept[-1] == messages[-1] and kept[-2] == messages[-2]
    assert MessagePart("user", "second") in kept
    # Room for the question but not for the round it awaits: nothing sensible to send.
    assert drop_oldest(messages, prompt_tokens=900, context_size=40, max_tokens=0) is None


# ---------- the retry around a call ----------
def refusing_transport(context_tokens: int) -> tuple[MockTransport, list[str]]:
    """Refuses as llama.cpp does a prompt of more than ``context_tokens`` (a word for a
    token), else replies; records every prompt it was sent."""
    prompts: list[str] = []

    def answer(request: GenerationRequest) -> MockReply:
        prompts.append(request.prompt)
        tokens = len(request.prompt.split())
        if tokens > context_tokens:
            return MockReply([], error=context_length_error(tokens, context_tokens))
        return MockReply(["fits"])

    return MockTransport(answer), prompts


def test_a_refused_call_is_sent_again_with_fewer_turns() -> None:
    transport, prompts = refusing_transport(context_tokens=300)
    llm = LocalLLM(transport=transport, max_tokens=20, context_overflow="drop_oldest")
    messages = conversation(turns=6)
    response = llm.generate(messages)
    assert response.text == "fits"
    assert len(prompts) >= 2 and len(prompts[-1].split()) <= 300
    # the system message and the last question were kept
    assert prompts[-1].startswith(prompts[0][:40]) and prompts[-1].endswith(prompts[0][-40:])
    assert response.api_metrics is not None
    assert 0 < response.api_metrics["messages_left_out"] < len(messages) - 1


def test_an_async_call_is_retried_the_same_way() -> None:
    import asyncio

    transport, prompts = refusing_transport(context_tokens=300)
    llm = LocalLLM(transport=transport, max_tokens=20, context_overflow="drop_oldest")
    assert asyncio.run(llm.agenerate(conversation(6))).text == "fits"
    assert len(prompts) >= 2 and len(prompts[-1].split()) <= 300


def test_with_the_error_policy_the_refusal_stands() -> None:
    transport, prompts = refusing_transport(context_tokens=300)
    llm = LocalLLM(transport=transport)
    with pytest.raises(LLMContextLengthError):
        llm.generate(conversation(6))
    assert len(prompts) == 1


def test_the_retries_are_bounded_and_the_last_refusal_is_raised() -> None:
    prompts: list[str] = []

    def always_refused(request: GenerationRequest) -> MockReply:
        prompts.append(request.prompt)
        # Claims a prompt far too long whatever was left out: the estimate never fits.
        return MockReply([], error=context_length_error(10_000, 1_000))

    llm = LocalLLM(transport=MockTransport(always_refused), context_overflow="drop_oldest")
    with pytest.raises(LLMContextLengthError):
        llm.generate(conversation(20))
    assert len(prompts) <= 4
    assert [len(p) for p in prompts] == sorted((len(p) for p in prompts), reverse=True)


def test_a_stream_is_retried_when_first_read_and_keeps_its_response() -> None:
    transport, prompts = refusing_transport(context_tokens=300)
    llm = LocalLLM(transport=transport, max_tokens=20, context_overflow="drop_oldest")
    messages = conversation(turns=6)
    stream = llm.stream(messages)
    assert "".join(stream) == "fits"
    assert stream.response.text == "fits"
    assert 0 < stream.messages_left_out < len(messages) and len(prompts) >= 2

    async def events() -> list[tuple[str, object]]:
        return [event async for event in llm.astream(messages).events()]

    import asyncio

    assert asyncio.run(events()) == [("text", "fits")]


# ---------- end to end on the real llama-completion ----------
def ask(llm: LocalLLM, messages: list[MessagePart]) -> tuple[str, list[MessagePart]]:
    """generate() with drop_oldest: the reply and what was sent."""
    stream = llm.stream(messages)
    text = "".join(stream)
    left_out = stream.messages_left_out
    sent = messages[:1] + messages[1 + left_out :] if left_out else list(messages)
    return text, sent


@pytest.fixture
def small_context(completion_bin: str, model_path: str) -> Callable[..., LocalLLM]:
    def build(overflow: str = "drop_oldest") -> LocalLLM:
        return LocalLLM(
            binary_path=completion_bin,
            model=model_path,
            n_ctx=256,
            max_tokens=8,
            seed=1,
            context_overflow=overflow,
        )

    return build


def test_a_long_conversation_goes_on_in_a_small_context(
    small_context: Callable[..., LocalLLM],
) -> None:
    messages = conversation(turns=5, words=30)  # about 700 tokens against 256
    with pytest.raises(LLMContextLengthError) as refused:
        small_context("error").generate(messages)
    assert refused.value.prompt_tokens is not None
    assert refused.value.prompt_tokens > 256

    text, sent = ask(small_context(), messages)
    assert text.strip()
    assert sent[0] == SYSTEM and sent[-1] == messages[-1] and len(sent) < len(messages)


def test_a_question_longer_than_the_context_alone_still_fails(
    small_context: Callable[..., LocalLLM],
) -> None:
    llm = small_context()
    messages = [SYSTEM, MessagePart("user", "hi"), MessagePart("user", "word " * 400)]
    with pytest.raises(LLMContextLengthError):
        ask(llm, messages)
