"""One answer per input: the same call per call (a llama-completion child) and warm (a kept
llama-server) gives the same text, finish reason, ``stopped_by`` and error.

On the real build and the default model, greedy and seeded. Each case is provoked from the
model's own reply (a stop chosen from what it says), and each test checks the case did
happen, so none passes by the model saying something else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from helpers.real_calls import CHATTY, QUESTION

from jazzmine.local import LLMResponse, LocalLLM, MessagePart

CHINESE = [MessagePart("user", "Say hello in Chinese.")]
EMOJI = [MessagePart("user", "Write a smiley emoji.")]
# A stop at the very start leaves an empty reply, which warns in both modes alike.
pytestmark = pytest.mark.filterwarnings("ignore:.*without producing any text:RuntimeWarning")


class Modes:
    def __init__(self, binary: str, model: str) -> None:
        options: dict[str, object] = {"temperature": 0.0, "seed": 7, "max_tokens": 24}
        self.per_call = LocalLLM(binary_path=binary, model=model, **options)  # type: ignore[arg-type]
        self.warm = LocalLLM(binary_path=binary, model=model, keep_alive="5m", **options)  # type: ignore[arg-type]

    def both(self, messages: list[MessagePart], **options: object) -> tuple[LLMResponse, ...]:
        """The same call in both modes; the parts the two must agree on are compared."""
        per_call = self.per_call.generate(messages, **options)  # type: ignore[arg-type]
        warm = self.warm.generate(messages, **options)  # type: ignore[arg-type]
        assert per_call.api_metrics is not None and warm.api_metrics is not None
        assert warm.api_metrics["transport"] == "server"
        assert per_call.api_metrics["transport"] == "per-call"
        assert (per_call.text, per_call.finish_reason, per_call.api_metrics["stopped_by"]) == (
            warm.text,
            warm.finish_reason,
            warm.api_metrics["stopped_by"],
        )
        return per_call, warm

    def close(self) -> None:
        self.warm.close()
        self.per_call.close()


@pytest.fixture(scope="module")
def modes(completion_bin: str, model_path: str) -> Iterator[Modes]:
    both = Modes(completion_bin, model_path)
    yield both
    both.close()


def test_a_stop_with_a_newline_does_not_end_a_reply_the_limit_cut(modes: Modes) -> None:
    per_call, _ = modes.both(QUESTION, max_tokens=6, stop=["\n"])
    # llama-completion printed its closing empty line after the cut reply.
    assert per_call.raw.endswith("\n\n") and "\n" not in per_call.text
    assert per_call.finish_reason == "length"


def test_a_stop_cut_in_half_by_the_limit_is_dropped_in_both(modes: Modes) -> None:
    cut = modes.per_call.generate(QUESTION, max_tokens=7)
    last_word = cut.text.split()[-1]
    stop = last_word + "\u2603\u2603"  # the reply ends with its first half
    per_call, _ = modes.both(QUESTION, max_tokens=7, stop=[stop])
    assert per_call.raw.rstrip().endswith(last_word)
    assert per_call.text == cut.text[: -len(last_word)].rstrip()
    assert per_call.finish_reason == "length" and per_call.api_metrics is not None
    assert per_call.api_metrics["stopped_by"] is None


def test_a_character_cut_by_the_limit_is_dropped_in_both(modes: Modes) -> None:
    for max_tokens in range(1, 13):
        per_call, _ = modes.both(CHINESE, max_tokens=max_tokens)
        if per_call.raw.rstrip("\n").endswith("\ufffd"):
            break
    else:
        pytest.fail("no limit from 1 to 12 cut a character of the reply in two")
    assert "\ufffd" not in per_call.text and per_call.finish_reason == "length"


@pytest.mark.parametrize("where", ["first character", "overlapping stops"])
def test_a_stop_at_the_very_start_of_the_reply_cuts_the_same(modes: Modes, where: str) -> None:
    reply = modes.per_call.generate(QUESTION, max_tokens=8).text
    assert len(reply) >= 3
    # Overlapping: the longer stop starts first, the shorter is complete first.
    stops = [reply[:1]] if where == "first character" else [reply[:3], reply[1:2]]
    per_call, _ = modes.both(QUESTION, max_tokens=8, stop=stops)
    assert per_call.finish_reason == "stop" and per_call.api_metrics is not None
    assert per_call.api_metrics["stopped_by"] == stops[-1]


def test_warm_reports_the_stop_that_ended_the_reply(modes: Modes) -> None:
    reply = modes.per_call.generate(QUESTION, max_tokens=16).text
    stop = reply.split()[2]
    per_call, warm = modes.both(QUESTION, max_tokens=16, stop=[stop])
    assert warm.api_metrics is not None and warm.api_metrics["stopped_by"] == stop
    assert per_call.text == reply[: reply.index(stop)].rstrip()


def test_the_models_own_end_is_no_stop_even_when_a_stop_is_in_the_end_marker(
    modes: Modes,
) -> None:
    ended = modes.per_call.generate(EMOJI)
    assert ended.finish_reason == "stop" and " [end of text]" in ended.raw
    assert "[" not in ended.text
    # llama-completion's " [end of text]" holds "[": its marker, never the model's stop.
    per_call, warm = modes.both(EMOJI, stop=["["])
    assert per_call.api_metrics is not None and per_call.api_metrics["stopped_by"] is None
    assert warm.api_metrics is not None and warm.api_metrics["stop_type"] == "eos"


def test_a_turn_marker_is_reported_as_the_stop_in_both(
    completion_bin: str, base_model_path: str
) -> None:
    base = Modes(completion_bin, base_model_path)
    try:
        per_call, _ = base.both(CHATTY, max_tokens=48)
    finally:
        base.close()
    # The base model writes the next turn; the flat format's marker ends the reply.
    assert per_call.finish_reason == "stop" and per_call.api_metrics is not None
    assert str(per_call.api_metrics["stopped_by"]).startswith("\n")


BAD_VALUES = [
    ("seed", "abc", TypeError),
    ("seed", 2**70, ValueError),
    ("temperature", math.nan, ValueError),
    ("stop", ["ok", "a\ud800"], ValueError),
]


@pytest.mark.parametrize(("name", "value", "kind"), BAD_VALUES)
def test_the_same_bad_value_fails_the_same_way(
    modes: Modes, completion_bin: str, model_path: str, name: str, value: object, kind: type
) -> None:
    errors = []
    for warm in (False, True):
        keep = {"keep_alive": "5m"} if warm else {}
        with pytest.raises(kind) as at_construction:
            LocalLLM(binary_path=completion_bin, model=model_path, **keep, **{name: value})  # type: ignore[arg-type]
        llm = modes.warm if warm else modes.per_call
        with pytest.raises(kind) as per_call:
            llm.generate(QUESTION, **{name: value})  # type: ignore[arg-type]
        with pytest.raises(kind) as streamed:
            "".join(llm.stream(QUESTION, **{name: value}))  # type: ignore[arg-type]
        errors.append(
            [(type(e.value), str(e.value)) for e in (at_construction, per_call, streamed)]
        )
    assert errors[0] == errors[1]
    assert name in errors[0][0][1]


def test_a_lone_surrogate_in_content_fails_the_same_way(modes: Modes) -> None:
    from jazzmine.local import LLMInvalidRequestError

    bad = [MessagePart("user", "hi \udc80 there")]
    found = []
    for llm in (modes.per_call, modes.warm):
        with pytest.raises(LLMInvalidRequestError, match="lone surrogate") as error:
            llm.generate(bad)
        found.append((type(error.value), str(error.value)))
    assert found[0] == found[1]


def test_the_servers_stopping_word_is_the_stop_warm_reports() -> None:
    from jazzmine.local.transports.server.api import event_outcome

    final = {"stop": True, "tokens_evaluated": 9, "tokens_predicted": 4, "stop_type": "word"}
    worded = event_outcome({**final, "stopping_word": "\nUser:"}, False, "")
    assert worded.details["stopped_by"] == "\nUser:" and worded.hit_token_limit is False
    for other in ("eos", "limit"):
        ended = event_outcome({**final, "stop_type": other, "stopping_word": ""}, False, "")
        assert "stopped_by" not in ended.details


@pytest.mark.parametrize("n_ctx", [256, 100])
def test_a_prompt_over_the_context_is_the_same_error_in_both(
    completion_bin: str, model_path: str, n_ctx: int
) -> None:
    from jazzmine.local import LLMContextLengthError

    # 100 is not a multiple of 256: llama-completion used to abort (get_sub_batch) on a
    # prompt between the context it was given and the one it rounded up to
    long_question = [MessagePart("user", "Tell me about the sea. " * 40)]
    errors = []
    for keep_alive in (None, "5m"):
        with LocalLLM(
            binary_path=completion_bin, model=model_path, n_ctx=n_ctx, keep_alive=keep_alive
        ) as llm:
            with pytest.raises(LLMContextLengthError) as caught:
                llm.generate(long_question, max_tokens=8)
            errors.append(caught.value)
    per_call, warm = errors
    assert per_call.signal_name is None
    assert (per_call.prompt_tokens, per_call.context_size, str(per_call)) == (
        warm.prompt_tokens,
        warm.context_size,
        str(warm),
    )
