"""Tool calls in a streamed reply: answer text as soon as it is safe, calls at the end.

``ToolStreamSplitter.feed`` returns the text that is certainly not part of a call,
holding back what could be the start of one (``<tool_ca``, whitespace that may lead
to a call, the opening of the generic envelope); ``finish`` parses the whole reply
with ``parse.parse_reply``. Joined, the texts it returned are exactly the parsed
reply's ``text``, so a stream and a generate() of the same reply agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .families import Family
from .json_read import decode_partial_string
from .parse import ENVELOPE_CONTENT, PYTHON_TAG, ParsedReply, parse_reply
from .spec import Choice, Tool


class ToolStreamSplitter:
    """Feed reply pieces; get the answer text as it becomes safe, and the calls at the end.

    ``feed(piece)`` returns text that is certainly not part of a call; ``finish()``
    returns the remaining text and the ``ParsedReply`` of the whole reply (raising
    ``LLMToolCallError`` as ``parse_reply`` does). Joined, the returned texts equal the
    parsed reply's ``text``.
    """

    def __init__(self, family: Family, tools: Sequence[Tool], choice: Choice | None = None):
        self.family = family
        self.tools = tuple(tools)
        self.choice = choice or Choice("auto")
        self.raw = ""
        self.emitted = ""
        self._mode = "undecided"  # text, held, content (generic envelope)
        self._content_start = 0
        if self.choice.mode == "none" or not self.tools:
            self._mode = "text"

    def feed(self, piece: str) -> str:
        self.raw += piece
        if self.choice.mode == "none" or not self.tools:
            return self._emit(self.raw)
        if self.family.trigger:
            return self._feed_marked()
        if self.family.name == "llama3":
            return self._feed_llama3()
        return self._feed_generic()

    def finish(self, *, complete: bool = True) -> tuple[str, ParsedReply]:
        parsed = parse_reply(self.raw, self.family, self.tools, self.choice, complete=complete)
        if not parsed.text.startswith(self.emitted):
            # cannot happen by construction; the assertion documents the promise
            raise AssertionError("streamed text is not a prefix of the parsed text")
        return parsed.text[len(self.emitted) :], parsed

    def _emit(self, upto_text: str) -> str:
        delta = upto_text[len(self.emitted) :]
        self.emitted = upto_text
        return delta

    def _feed_marked(self) -> str:
        if self._mode == "held":
            return ""
        trigger = self.family.trigger
        # what was emitted is a prefix of raw without the trigger: search only after it
        found = self.raw.find(trigger, max(0, len(self.emitted) - len(trigger)))
        if found >= 0:
            self._mode = "held"
            return self._emit(self.raw[:found].rstrip())
        # hold back a possible start of the trigger, and whitespace that may lead to it
        keep = len(self.raw)
        for size in range(min(len(trigger) - 1, len(self.raw)), 0, -1):
            if self.raw.endswith(trigger[:size]):
                keep -= size
                break
        return self._emit(self.raw[:keep].rstrip())

    def _feed_llama3(self) -> str:
        if self._mode == "text":
            return self._emit(self.raw)
        if self._mode == "held":
            return ""
        body = self.raw.lstrip()
        if not body:
            return ""
        if body.startswith("{") or body.startswith(PYTHON_TAG):
            self._mode = "held"
            return ""
        if PYTHON_TAG.startswith(body):
            return ""
        self._mode = "text"
        return self._emit(self.raw)

    def _feed_generic(self) -> str:
        if self._mode == "text":
            return self._emit(self.raw)
        if self._mode == "held":
            return ""
        if self._mode == "undecided":
            body = self.raw.lstrip()
            if not body:
                return ""
            if not body.startswith("{"):
                self._mode = "text"
                return self._emit(self.raw)
            opening = ENVELOPE_CONTENT.match(self.raw)
            if opening is None:
                if not _could_open_content(self.raw):
                    self._mode = "held"
                return ""
            self._mode = "content"
            self._content_start = opening.end()
        text, _, closed = decode_partial_string(self.raw[self._content_start :])
        if closed:
            self._mode = "held"
        return self._emit(text)


def _could_open_content(text: str) -> bool:
    """Whether ``text`` may still grow into the opening ``{"content": "``."""
    compact = re.sub(r"\s+", "", text)
    return '{"content":"'.startswith(compact)
