"""Separating a reply's reasoning (``<think>...</think>``) from its answer, piece by piece.

Reasoning models write their thoughts between two markers before the answer; which
markers is the template's choice, learned from it (``template.thinking``). Where
the block starts differs: most write the opening marker themselves, as the first thing
in the reply; some templates write it at the end of the prompt (Qwen3 and DeepSeek R1
style "opened" blocks), so the reply starts inside the reasoning and only the closing
marker appears. As in llama.cpp's reasoning parser (``analyze_reasoning::build_parser``
in ``common/chat-auto-parser-generator.cpp``), only a block at the very start of the
reply counts; a marker later on is answer text.

``ReasoningSplitter`` takes the reply in pieces of any size: a marker split across
pieces (``</th`` + ``ink>``) is held back until it is known, and a reply cut off while
still thinking leaves ``truncated`` set. Whitespace next to the markers is dropped:
reasoning and answer come out trimmed at the marker side.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_START = "<think>"
DEFAULT_END = "</think>"


@dataclass(frozen=True)
class Think:
    """A reasoning block that may precede the answer: its delimiters, and whether the
    prompt already opened it (the reply then starts inside the reasoning).

    The rest is what the template writes around it (``template.thinking``): the end
    of a generation prompt that opens the block, the markers around the answer after
    the thinking (Cohere's ``<|START_TEXT|>``/``<|END_TEXT|>``), and whether a reply
    may start inside a block the prompt closed (its first marker is then the end).
    """

    start: str = DEFAULT_START
    end: str = DEFAULT_END
    opened: bool = False
    prompt_opening: str = ""
    answer_start: str = ""
    answer_end: str = ""
    maybe_open: bool = False
    # the text between the reasoning and the answer as the template writes it, markers
    # and whitespace ("\n</think>\n\n"); "" when not known
    closing: str = ""

    def splitter(self, *, skipped_by: tuple[str, ...] = ()) -> ReasoningSplitter:
        return ReasoningSplitter(
            self.start,
            self.end,
            opened=self.opened,
            answer_start=self.answer_start,
            answer_end=self.answer_end,
            maybe_open=self.maybe_open and not self.opened,
            skipped_by=skipped_by,
        )

    def opened_by(self, prompt: str) -> bool:
        """Whether ``prompt`` ends inside this block: with the generation prompt that
        opens it, or with the opening marker itself."""
        opening = self.prompt_opening.strip()
        if opening and prompt.rstrip().endswith(opening):
            return True
        return opened_in_prompt(prompt, self.start)


def opened_in_prompt(prompt: str, start: str = DEFAULT_START) -> bool:
    """Whether the prompt ends inside an open reasoning block (its last words are the
    opening marker), so the reply starts with reasoning."""
    marker = start.strip()
    return bool(marker) and prompt.rstrip().endswith(marker)


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker`` (not all of it)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


def _shared_markup(opening: str, text: str) -> int:
    """How much of ``text`` starts as ``opening`` does, up to where both leave a word or
    marker at once, holding a whole marker (0 when no such point exists)."""
    n = 0
    while n < min(len(opening), len(text)) and opening[n] == text[n]:
        n += 1

    def apart(s: str, at: int) -> bool:
        return at == len(s) or s[at] in "<[ \t\n"

    while n > 0 and not (apart(opening, n) and apart(text, n)):
        n -= 1
    return n if ">" in opening[:n] or "]" in opening[:n] else 0


class ReasoningSplitter:
    """Feed pieces of a reply; get (reasoning, answer) text as each becomes certain.

    ``feed`` and ``finish`` return a pair of deltas; joined, the first items are the
    reasoning and the second the answer. After ``finish``, ``truncated`` says the reply
    ended before the reasoning was closed.
    """

    def __init__(
        self,
        start: str = DEFAULT_START,
        end: str = DEFAULT_END,
        *,
        opened: bool = False,
        answer_start: str = "",
        answer_end: str = "",
        maybe_open: bool = False,
        skipped_by: tuple[str, ...] = (),
    ) -> None:
        if not end.strip():
            raise ValueError("the reasoning end marker must not be empty")
        self.start = start.strip()
        self.end = end.strip()
        self.answer_start = answer_start.strip()
        self.answer_end = answer_end.strip()
        # a reply not opening the block may still be inside one: it is held until the
        # end marker shows (then it was reasoning) or the reply ends (it was the answer)
        self._maybe_open = maybe_open
        # words that, first in a block the prompt opened, say the model skipped its
        # thinking: a tool call's trigger (the templates' own call turns are written so,
        # with the block the prompt opened left unclosed)
        self._skipped_by = tuple(word for word in (w.strip() for w in skipped_by) if word)
        # "start": is there a block at all?  "reasoning", then "answer".
        self._state = "reasoning" if opened or not self.start else "start"
        self._pending = ""
        # at the start of the reasoning or of the answer, whitespace is dropped
        self._fresh = True
        self.reasoning = ""
        self.answer = ""
        self.truncated = False

    def feed(self, piece: str) -> tuple[str, str]:
        self._pending += piece
        reasoning, answer = "", ""
        while True:
            if self._state == "start":
                done = self._decide()
                if not done:
                    break
            elif self._state == "reasoning":
                delta, closed = self._reason()
                reasoning += delta
                if not closed:
                    break
            else:
                answer += self._answer()
                break
        self.reasoning += reasoning
        self.answer += answer
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """The rest; a marker left unfinished at the end is plain text after all."""
        reasoning, answer = "", ""
        if self._state == "start":
            # no block: whatever was held is the answer
            self._state, self._fresh = "answer", bool(self.answer_start)
            answer = self._answer(final=True)
        elif self._state == "reasoning":
            self.truncated = True
            reasoning = self._pending.rstrip()
            if self._fresh:
                reasoning = reasoning.lstrip()
        else:
            answer = self._answer(final=True)
        self._pending = ""
        self.reasoning += reasoning
        self.answer += answer
        return reasoning, answer

    def _decide(self) -> bool:
        """In "start": move on once the reply's beginning shows whether a block opens."""
        body = self._pending.lstrip()
        if body.startswith(self.start):
            self._pending = body[len(self.start) :]
            self._state = "reasoning"
            return True
        if body.startswith(self.end):
            # an empty block written as its closing alone (MiniMax M3's "</mm:think>")
            self._pending = body[len(self.end) :]
            self._state, self._fresh = "answer", True
            return True
        if not body or self.start.startswith(body) or self.end.startswith(body):
            return False
        if self._maybe_open:
            found = self._pending.find(self.end)
            if found < 0:
                return False  # held: reasoning if the end marker comes, else the answer
            self._state = "reasoning"
            return True
        # no reasoning: the answer is verbatim, but for the template's own opening
        self._state, self._fresh = "answer", bool(self.answer_start)
        return True

    def _reason(self) -> tuple[str, bool]:
        """In "reasoning": the reasoning that is certain, and whether the block closed."""
        if self._fresh:
            self._pending = self._pending.lstrip()
            if self.start and self._pending.startswith(self.start):
                # the model opened the block again although the prompt did
                self._pending = self._pending[len(self.start) :].lstrip()
            elif self.start and self.start.startswith(self._pending) and self._pending:
                return "", False
            if not self._pending:
                return "", False
            if any(self._pending.startswith(word) for word in self._skipped_by):
                self._state = "answer"  # no thinking: the reply is the call
                return "", True
            if any(word.startswith(self._pending) for word in self._skipped_by):
                return "", False  # may still become a call's trigger
            self._fresh = False
        found = self._pending.find(self.end)
        if found >= 0:
            delta = self._pending[:found].rstrip()
            self._pending = self._pending[found + len(self.end) :]
            self._state, self._fresh = "answer", True
            return delta, True
        keep = len(self._pending) - _partial_suffix(self._pending, self.end)
        delta = self._pending[:keep].rstrip()
        self._pending = self._pending[len(delta) :]
        return delta, False

    def _answer(self, *, final: bool = False) -> str:
        """In "answer": the answer that is certain, without the markers the template
        writes around it (a marker split across pieces is held back until known)."""
        if self._fresh:
            self._pending = self._pending.lstrip()
            opening = self.answer_start
            if opening and self._pending.startswith(opening):
                self._pending = self._pending[len(opening) :].lstrip()
            elif opening and opening.startswith(self._pending) and not final:
                return ""
            elif opening:
                # another message of the turn (GPT-OSS's "<|start|>assistant to=functions.f"):
                # what it shares with the answer's opening is markup, its recipient the
                # call reader's
                self._pending = self._pending[_shared_markup(opening, self._pending) :].lstrip()
            if not self._pending:
                return ""
            self._fresh = False
        closing = self.answer_end
        if not closing:
            delta, self._pending = self._pending, ""
            return delta
        found = self._pending.find(closing)
        if found >= 0:
            delta = self._pending[:found] + self._pending[found + len(closing) :]
            self._pending = ""
            return delta
        keep = (
            len(self._pending)
            if final
            else len(self._pending) - _partial_suffix(self._pending, closing)
        )
        delta, self._pending = self._pending[:keep], self._pending[keep:]
        return delta
