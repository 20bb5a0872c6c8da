"""An assembled reply split into its parts as it arrives: reasoning, answer text, tool calls.

``assembler.ReplyAssembler`` decides what of the binary's output is the reply; this takes
that reply and separates what a reasoning model thought (``<think>...</think>``, by
``tools.reasoning.ReasoningSplitter``) from its answer, then the tool calls from the answer's
text (``tools.stream.ToolStreamSplitter``). Every transport and every method shares it
through ``call.run.run_call``, so a stream and a ``generate`` of one reply agree, in both modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from ..errors import LLMToolCallError
from ..tools.reasoning import ReasoningSplitter

if TYPE_CHECKING:
    from ..tools.plan import ToolCall, ToolPlan

# A piece's kind: the answer (what iterating a stream yields) or the model's reasoning;
# a stream's ``events()`` adds the tool calls, once the reply is complete.
TEXT: Final[Literal["text"]] = "text"
REASONING: Final[Literal["reasoning"]] = "reasoning"
TOOL_CALL: Final = "tool_call"
PieceKind = Literal["text", "reasoning"]
# (kind, text)
Piece = tuple[PieceKind, str]


class ReplyParts:
    """Feed reply pieces; get (kind, text) pieces back; after ``finish``, the parts."""

    def __init__(self, plan: ToolPlan | None, thinking: ReasoningSplitter | None) -> None:
        self._thinking = thinking
        self._splitter = plan.splitter() if plan is not None else None
        self._choice = plan.choice.mode if plan is not None else None
        self._forces_call = plan is not None and plan.choice.forces_call
        self.text = ""
        self.reasoning: str | None = None
        self.tool_calls: list[ToolCall] = []
        # tool_choice "none": calls the model wrote anyway, left out of the text
        self.tool_calls_dropped = 0

    @property
    def active(self) -> bool:
        """False when the reply is all answer text (no tools, no reasoning template)."""
        return self._thinking is not None or self._splitter is not None

    def feed(self, piece: str) -> list[Piece]:
        if self._thinking is None:
            return self._answer(piece)
        reasoning, answer = self._thinking.feed(piece)
        return [(REASONING, reasoning)] * bool(reasoning) + self._answer(answer)

    def finish(self, *, complete: bool) -> list[Piece]:
        """The rest of the reply. ``complete=False``: max_tokens cut it (an open call is
        then reported as cut off). Raises ``LLMToolCallError`` for a call it cannot use."""
        pieces: list[Piece] = []
        if self._thinking is not None:
            reasoning, answer = self._thinking.finish()
            pieces += [(REASONING, reasoning)] * bool(reasoning) + self._answer(answer)
            self.reasoning = self._thinking.reasoning or None
            if self._forces_call and self._thinking.truncated:
                # the grammar let the model think first, and it never stopped: say so,
                # rather than that the reply "has no call"
                raise LLMToolCallError(
                    "tool_choice requires a tool call, but the reply ended while the "
                    f"model was still thinking ({len(self._thinking.reasoning)} characters "
                    "of reasoning, no call yet): raise max_tokens, cap the thinking with "
                    "reasoning=N, or turn it off with reasoning=False",
                    raw_text=self._thinking.reasoning,
                )
        if self._splitter is not None:
            rest, parsed = self._splitter.finish(complete=complete)
            self.tool_calls = list(parsed.tool_calls)
            self.tool_calls_dropped = parsed.dropped
            if rest:
                self.text += rest
                pieces.append((TEXT, rest))
        return pieces

    def metrics(self) -> dict[str, int]:
        """What the response's api_metrics add: with tool_choice "none", how many calls
        the model wrote anyway (left out of the text, never returned)."""
        if self._choice != "none":
            return {}
        return {"tool_calls_dropped": self.tool_calls_dropped}

    def _answer(self, text: str) -> list[Piece]:
        if self._splitter is not None and text:
            text = self._splitter.feed(text)
        if not text:
            return []
        self.text += text
        return [(TEXT, text)]
