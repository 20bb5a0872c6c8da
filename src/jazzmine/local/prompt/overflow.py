"""``context_overflow="drop_oldest"``: a conversation longer than the context goes on
with its oldest turns left out, instead of ending in ``LLMContextLengthError``.

``drop_oldest`` is the policy, pure: from the messages and what the refusal said (the
prompt's tokens, the context's size) it picks the messages to send. System messages,
wherever they stand (a conversation may carry instructions midway), and the latest user
message always stay; the other messages of whole turns go from the oldest, so roles
still alternate as chat templates require, and a tool call never loses the answer to it.
Tokens are shared out among messages by their length, as only the whole prompt was
counted; a guess that falls short is corrected by the next refusal, which counts the
shorter prompt (the call's flow tries again, a few times).

``trimmed_for`` reads a refusal; the call's flow (``call.flow``) calls it on a refusal
for length, which comes before any text, and prepares the call again with what it gives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import LLMContextLengthError
from ..types import MessagePart

if TYPE_CHECKING:
    pass

DROP_OLDEST = "drop_oldest"
# What a chat template adds around each message ("<|im_start|>user\n" ... "<|im_end|>\n"),
# in characters, so that many short messages are not taken for nothing.
MESSAGE_OVERHEAD_CHARS = 16
# Room kept for the reply when the call sets no max_tokens: a quarter of the context.
DEFAULT_REPLY_SHARE = 4
# The reply's room is at most half the context, even for a larger max_tokens: llama.cpp
# runs a prompt that fits and ends the reply where the context ends (finish_reason
# "length"), so a conversation is not given up for a reply that long.
MAX_REPLY_SHARE = 2


def drop_oldest(
    messages: Sequence[MessagePart],
    prompt_tokens: int,
    context_size: int,
    max_tokens: int | None = None,
) -> list[MessagePart] | None:
    """The messages with the oldest turns left out so the prompt should fit
    ``context_size`` with room for the reply; None when even the system messages and
    the latest user message (with the exchange that follows it) cannot fit, or when
    there is nothing to leave out."""
    if not messages or prompt_tokens <= 0 or context_size <= 0:
        return None
    reply_room = min(
        max_tokens if max_tokens is not None else context_size // DEFAULT_REPLY_SHARE,
        context_size // MAX_REPLY_SHARE,
    )
    budget = context_size - reply_room
    weights = [_chars(message) + MESSAGE_OVERHEAD_CHARS for message in messages]
    tokens_per_weight = prompt_tokens / sum(weights)

    def tokens(indices: Sequence[int]) -> float:
        return sum(weights[index] for index in indices) * tokens_per_weight

    kept_always, droppable = _units(messages)
    if tokens(kept_always) > budget:
        return None
    dropped: set[int] = set()
    remaining = tokens(range(len(messages)))
    for unit in droppable:
        if remaining <= budget:
            break
        dropped.update(unit)
        remaining -= tokens(unit)
    if not dropped or remaining > budget:
        return None
    return [message for index, message in enumerate(messages) if index not in dropped]


def _chars(message: MessagePart) -> int:
    size = len(message.content)
    if message.tool_calls:
        size += len(json.dumps(message.tool_calls, ensure_ascii=False))
    return size


def _units(messages: Sequence[MessagePart]) -> tuple[list[int], list[list[int]]]:
    """Which messages always stay, and the rest as units to leave out, oldest first.

    Before the latest user message a unit is a whole turn (a user message and all that
    answers it); after it, an assistant message with the tool messages answering it
    (the exchange in progress), of which the last always stays: the model answers it.
    System messages belong to no unit: they stay where they stand.
    """
    count = len(messages)
    system = [index for index in range(count) if messages[index].role == "system"]
    users = [index for index in range(count) if messages[index].role == "user"]
    last_user = users[-1] if users else count - 1
    kept = sorted({*system, last_user})
    units: list[list[int]] = []
    for index in range(last_user):
        if messages[index].role == "system":
            continue
        if not units or messages[index].role == "user":
            units.append([])
        units[-1].append(index)
    rounds: list[list[int]] = []
    for index in range(last_user + 1, count):
        if messages[index].role == "system":
            continue
        if not rounds or messages[index].role != "tool":
            rounds.append([])
        rounds[-1].append(index)
    if rounds:
        kept += rounds.pop()
    return kept, units + rounds


def trimmed_for(
    messages: Sequence[MessagePart], refusal: LLMContextLengthError, max_tokens: int | None
) -> list[MessagePart] | None:
    """``drop_oldest`` for what a refusal said; None when it said too little to act on,
    or came after text was produced."""
    if refusal.prompt_tokens is None or refusal.context_size is None or refusal.partial_text:
        return None
    return drop_oldest(messages, refusal.prompt_tokens, refusal.context_size, max_tokens)
