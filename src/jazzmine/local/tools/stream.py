"""Tool calls in a streamed reply: answer text as soon as it is safe, calls at the end.

``ToolStreamSplitter.feed`` returns the text that is certainly not part of a call,
holding back what could be the start of one (``<tool_ca``, ``{"name": "get_wea``,
whitespace that may lead to a call, the opening of the generic envelope); ``finish``
parses the whole reply with ``parse.parse_reply``. Joined, the texts it returned
are exactly the parsed reply's ``text``, so a stream and a generate() of the same reply
agree, and a stream never shows markup that the parsed text leaves out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .families import PYTHON_TAG, Family, call_openings
from .json_read import decode_partial_string
from .parse import ENVELOPE_CONTENT, ParsedReply, parse_reply
from .spec import Choice, Tool


class ToolStreamSplitter:
    """Feed reply pieces; get the answer text as it becomes safe, and the calls at the end.

    ``feed(piece)`` returns text that is certainly not part of a call; ``finish()``
    returns the remaining text and the ``ParsedReply`` of the whole reply (raising
    ``LLMToolCallError`` as ``parse_reply`` does). Joined, the returned texts equal the
    parsed reply's ``text``. With tool_choice "none" it holds back markup just the same:
    ``parse_reply`` then leaves the calls out of the text.
    """

    def __init__(self, family: Family, tools: Sequence[Tool], choice: Choice | None = None):
        self.family = family
        self.tools = tuple(tools)
        self.choice = choice or Choice("auto")
        self.raw = ""
        self.emitted = ""
        self._openings = call_openings(family, [tool.name for tool in self.tools])
        # plain (no tools), start (llama3 and generic read a reply that opens with "{"
        # whole), text (calls may follow), held (a call started), content (generic
        # envelope's answer)
        self._mode = "text" if family.trigger else "start"
        self._content_start = 0
        if not self.tools:
            self._mode = "plain"

    def feed(self, piece: str) -> str:
        self.raw += piece
        if self._mode == "plain":
            return self._emit(self.raw)
        if self._mode == "start":
            self._mode = self._opening()
        if self._mode == "content":
            return self._feed_content()
        if self._mode == "text":
            return self._feed_text()
        return ""

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

    def _feed_text(self) -> str:
        """Text up to where a call begins, holding back what may still begin one and
        the whitespace before it (a call's text loses it)."""
        begin = len(self.emitted)  # everything before was judged: no call starts there
        found = self._openings.find(self.raw, begin)
        if found >= 0:
            self._mode = "held"
            return self._emit(self.raw[:found].rstrip())
        return self._emit(self.raw[: self._openings.pending(self.raw, begin)].rstrip())

    def _opening(self) -> str:
        """llama3 and generic: how the reply opens decides the mode ("start" while it
        cannot be known yet)."""
        body = self.raw.lstrip()
        if not body:
            return "start"
        if self.family.format is not None:
            # a format without markup of its own: a reply that opens with a tool's
            # name (then what the template writes after it) is a call
            names = [tool.name for tool in self.tools]
            if any(name.startswith(body) for name in names):
                return "start"
            if any(body.startswith(name) for name in names):
                return "held"
            return "text"
        if self.family.name == "llama3":
            if body.startswith(("{", PYTHON_TAG)):
                return "held"
            return "start" if PYTHON_TAG.startswith(body) else "text"
        if not body.startswith("{"):
            return "text"
        opening = ENVELOPE_CONTENT.match(self.raw)
        if opening is None:
            return "start" if _could_open_content(self.raw) else "held"
        self._content_start = opening.end()
        return "content"

    def _feed_content(self) -> str:
        text, _, closed = decode_partial_string(self.raw[self._content_start :])
        if closed:
            self._mode = "held"
        return self._emit(text)


def _could_open_content(text: str) -> bool:
    """Whether ``text`` may still grow into the opening ``{"content": "``."""
    compact = re.sub(r"\s+", "", text)
    return '{"content":"'.startswith(compact)
