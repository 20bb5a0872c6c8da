"""Reasoning blocks split from the answer, piece by piece (jazzmine.local.tools.reasoning)."""

from __future__ import annotations

import random

import pytest

from jazzmine.local.tools.reasoning import ReasoningSplitter, Think, opened_in_prompt


def split(pieces: list[str], **options: object) -> tuple[str, str, bool, list[tuple[str, str]]]:
    """Feed ``pieces``; the joined reasoning and answer, truncation, and every delta."""
    splitter = ReasoningSplitter(**options)  # type: ignore[arg-type]
    deltas = [splitter.feed(piece) for piece in pieces]
    deltas.append(splitter.finish())
    reasoning = "".join(r for r, _ in deltas)
    answer = "".join(a for _, a in deltas)
    assert (reasoning, answer) == (splitter.reasoning, splitter.answer)
    return reasoning, answer, splitter.truncated, deltas


def every_split(text: str) -> list[list[str]]:
    """The text whole, a character at a time, and cut at every single position."""
    cuts = [[text], list(text)]
    cuts += [[text[:i], text[i:]] for i in range(1, len(text))]
    rng = random.Random(7)
    for _ in range(10):
        points = sorted(rng.sample(range(1, len(text)), 3))
        cuts.append([text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)])
    return cuts


COHERE = {
    "start": "<|START_THINKING|>",
    "end": "<|END_THINKING|>",
    "answer_start": "<|START_TEXT|>",
    "answer_end": "<|END_TEXT|>",
}
CASES = [
    # (reply, options, reasoning, answer, truncated)
    ("<think>\nLet me see.\n</think>\n\nIt is 4.", {}, "Let me see.", "It is 4.", False),
    (
        "  <think>a < b, and </thin is not the end</think>Yes",
        {},
        "a < b, and </thin is not the end",
        "Yes",
        False,
    ),
    (
        "No reasoning here. <think>late</think> stays",
        {},
        "",
        "No reasoning here. <think>late</think> stays",
        False,
    ),
    ("<thinking>is not the marker", {}, "", "<thinking>is not the marker", False),
    ("<think>cut off while thinking about", {}, "cut off while thinking about", "", True),
    ("<think>ends on a partial </thi", {}, "ends on a partial </thi", "", True),
    ("<think></think>Just the answer", {}, "", "Just the answer", False),
    ("<think>\n\n</think>\n\n", {}, "", "", False),
    ("<thi", {}, "", "<thi", False),
    ("", {}, "", "", False),
    # the prompt opened the block: the reply starts inside the reasoning
    ("I should add.\n</think>\n\n2 + 2 = 4", {"opened": True}, "I should add.", "2 + 2 = 4", False),
    ("<think>opened twice</think>ok", {"opened": True}, "opened twice", "ok", False),
    ("still thinking", {"opened": True}, "still thinking", "", True),
    # other markers (Mistral's [THINK], Apriel's delimiter-only style)
    ("[THINK]hmm[/THINK]Answer", {"start": "[THINK]", "end": "[/THINK]"}, "hmm", "Answer", False),
    (
        "steps\n[BEGIN FINAL RESPONSE]\nDone",
        {"start": "", "end": "[BEGIN FINAL RESPONSE]"},
        "steps",
        "Done",
        False,
    ),
    # markers the template writes around the answer after the thinking (Cohere)
    (
        "<|START_THINKING|>hmm<|END_THINKING|><|START_TEXT|>Answer<|END_TEXT|>",
        COHERE,
        "hmm",
        "Answer",
        False,
    ),
    ("<|START_TEXT|>No thinking<|END_TEXT|>", COHERE, "", "No thinking", False),
    ("Plain <|END_TEXT|> after", COHERE, "", "Plain  after", False),
    ("<|START_TEX", COHERE, "", "<|START_TEX", False),
    # a reply that may start inside a block the prompt closed (Hunyuan)
    ("hmm</think>Answer", {"maybe_open": True}, "hmm", "Answer", False),
    ("Just the answer", {"maybe_open": True}, "", "Just the answer", False),
    ("<think>hmm</think>Answer", {"maybe_open": True}, "hmm", "Answer", False),
]


@pytest.mark.parametrize(("reply", "options", "reasoning", "answer", "truncated"), CASES)
def test_reasoning_and_answer_whatever_the_pieces(
    reply: str, options: dict[str, object], reasoning: str, answer: str, truncated: bool
) -> None:
    for pieces in every_split(reply) if len(reply) > 1 else [[reply]]:
        got = split(pieces, **options)
        assert got[:3] == (reasoning, answer, truncated), pieces


def test_a_closing_marker_split_across_pieces_never_leaks() -> None:
    reasoning, answer, _, deltas = split(["<think>x </th", "in", "k>", " y"])
    assert (reasoning, answer) == ("x", "y")
    assert all("<" not in r for r, _ in deltas)
    assert deltas[0] == ("x", "")  # the text before a possible marker comes out at once


def test_reasoning_streams_before_the_block_closes() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>first") == ("first", "")
    assert splitter.feed(" second ") == (" second", "")
    assert splitter.feed("third") == (" third", "")
    assert splitter.feed("</think>answer") == ("", "answer")


def test_an_answer_without_a_block_streams_at_once() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("Hello") == ("", "Hello")
    assert splitter.feed(" <think>") == ("", " <think>")


def test_opened_in_prompt() -> None:
    assert opened_in_prompt("<|im_start|>assistant\n<think>\n")
    assert not opened_in_prompt("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not opened_in_prompt("<|im_start|>assistant\n")
    assert opened_in_prompt("...[THINK]", "[THINK]")
    assert not opened_in_prompt("anything", "")


def test_an_empty_end_marker_is_refused() -> None:
    with pytest.raises(ValueError):
        ReasoningSplitter(end=" ")


def test_the_answers_closing_marker_split_across_pieces_never_leaks() -> None:
    splitter = ReasoningSplitter(answer_end="<|END_TEXT|>")
    assert splitter.feed("<think>a</think>Yes <|END") == ("a", "Yes ")
    assert splitter.feed("_TEXT|>") == ("", "")
    assert splitter.finish() == ("", "")
    assert splitter.answer == "Yes "


def test_think_builds_its_splitter_and_knows_a_prompt_that_opens_it() -> None:
    think = Think("<think>", "</think>", prompt_opening="<|im_start|>assistant\n<think>")
    assert think.opened_by("...<|im_start|>assistant\n<think>\n")
    assert not think.opened_by("...<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the opening marker alone opens it too (a prefilled "<think>")
    assert think.opened_by("...<think>")
    opened = Think("<think>", "</think>", opened=True, maybe_open=True).splitter()
    opened.feed("a</think>b")
    assert (opened.reasoning, opened.answer) == ("a", "b")


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_a_call_first_in_a_block_the_prompt_opened_skips_the_thinking(size: int) -> None:
    # the templates' own call turns are written so: the prompt opens <think>, the turn
    # is the call, and no </think> ever comes
    reply = '\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    splitter = Think(opened=True).splitter(skipped_by=("<tool_call>",))
    reasoning, answer = _feed(splitter, reply, size)
    assert reasoning == "" and answer == reply.lstrip()
    assert not splitter.truncated
    # reasoning first: a call written inside the thinking stays reasoning
    splitter = Think(opened=True).splitter(skipped_by=("<tool_call>",))
    musing = "I could write <tool_call> here.</think>The answer."
    assert _feed(splitter, musing, size) == ("I could write <tool_call> here.", "The answer.")
    # without the trigger, an unclosed block is reasoning cut short, as before
    splitter = Think(opened=True).splitter()
    assert _feed(splitter, reply, size) == (reply.strip(), "")
    assert splitter.truncated


def _feed(splitter: ReasoningSplitter, text: str, size: int) -> tuple[str, str]:
    reasoning, answer = "", ""
    for at in range(0, len(text), size):
        r, a = splitter.feed(text[at : at + size])
        reasoning, answer = reasoning + r, answer + a
    r, a = splitter.finish()
    return reasoning + r, answer + a


HARMONY = Think(
    "<|channel|>analysis<|message|>",
    "<|end|>",
    answer_start="<|start|>assistant<|channel|>final<|message|>",
    answer_end="<|end|>",
)
MUSE = Think("to=self<|message|>", "<|eom|>", answer_start="<|start|>assistant to=user<|message|>")


@pytest.mark.parametrize("size", [1, 3, 1000])
@pytest.mark.parametrize(
    ("think", "reply", "answer"),
    [
        (
            HARMONY,
            "<|channel|>analysis<|message|>R<|end|><|start|>assistant to=functions.f<|channel|>x",
            "to=functions.f<|channel|>x",
        ),
        (
            HARMONY,
            "<|channel|>analysis<|message|>R<|end|><|start|>assistant<|channel|>final<|message|>A<|end|>",
            "A",
        ),
        (
            MUSE,
            " to=self<|message|>R<|eom|><|start|>assistant to=f<|message|>x",
            "to=f<|message|>x",
        ),
        (MUSE, " to=self<|message|>R<|eom|><|start|>assistant to=user<|message|>A", "A"),
        (MUSE, " to=self<|message|>R<|eom|><|start|>other", "<|start|>other"),
    ],
)
def test_a_message_after_the_thinking_loses_the_markup_it_shares_with_the_answer_s(
    size: int, think: Think, reply: str, answer: str
) -> None:
    """GPT-OSS and Muse write each message of a turn with its own opening: after the
    thinking, a call's message opens as the answer's does up to its recipient. That
    shared markup is no text of the reply; the call's own part is left to the call
    reader."""
    assert _feed(think.splitter(), reply, size) == ("R", answer)
