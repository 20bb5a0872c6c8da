"""Caller text cannot forge a chat template's turns.

llama.cpp tokenizes a prompt with ``parse_special`` on (llama-completion always, and
llama-server's ``/completion`` for a text prompt), so a message whose content holds a
control token's text, say ``<|im_end|>\\n<|im_start|>assistant\\n`` for ChatML, gets the
real control tokens: a web page or a tool result could end the user's turn and speak as
the model. Before a template renders the messages, every caller-supplied string it
prints (content, tool call names, ids and arguments, a tool message's name and call id,
every string of the tools' definitions) has each occurrence of such a text broken by an
invisible character after its first character: llama.cpp's special-token partitioning
(an exact byte search per token, ``tokenizer_st_partition``) no longer finds it, and the
model reads nearly the same characters as ordinary text. The prompt bytes are then the
same in both modes.

Which texts: the vocabulary's CONTROL and UNKNOWN tokens (the ones llama.cpp matches
only with parse_special; ``gguf.vocab.PARSE_SPECIAL_TYPES``), plus the USER_DEFINED
tokens and the names llama.cpp promotes to CONTROL that the template itself prints
(turn markup such as Qwen's ``<tool_response>``). Other USER_DEFINED tokens are left
alone: llama.cpp matches them in any text, without parse_special, the way Hugging Face
matches non-special added tokens (Gemma 3's ``\\n\\n``, runs of spaces, ``<table>``), so
they are how the model reads ordinary text, and breaking them would only garble it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import LLMInvalidRequestError
from ..gguf.reader import SpecialTexts, read_special_texts, read_tokenizer_info
from ..gguf.vocab import PROMOTED_TO_CONTROL
from ..types import MessagePart

__all__ = [
    "Neutraliser",
    "control_texts",
    "neutralise_messages",
    "neutralise_tools",
    "neutraliser",
    "select_texts",
]

# What is put inside a control text, first choice first: ZERO WIDTH SPACE, WORD JOINER,
# ZERO WIDTH NON-JOINER. All three are invisible and carry no meaning of their own; the
# first that no control text contains is used, so the insertion can never complete one.
SEPARATORS = ("\u200b", "\u2060", "\u200c")

_texts_cache: dict[tuple[str, int, int, str], tuple[str, ...]] = {}
_texts_lock = threading.Lock()


def control_texts(
    model_path: str | os.PathLike[str] | None, template_source: str | None = None
) -> tuple[str, ...]:
    """The texts to break in caller strings for this model and template, longest first.

    ``template_source`` is the Jinja source the prompt is rendered with (the GGUF's own
    when None). Without a model file only the template's promoted names are known.
    Cached per path, modification time, size and template.
    """
    if model_path is None:
        return select_texts(SpecialTexts((), ()), template_source or "")
    stat = os.stat(model_path)
    if template_source is None:
        template_source = read_tokenizer_info(model_path).chat_template or ""
    key = (os.fspath(model_path), stat.st_mtime_ns, stat.st_size, template_source)
    with _texts_lock:
        cached = _texts_cache.get(key)
    if cached is not None:
        return cached
    texts = select_texts(read_special_texts(model_path), template_source)
    with _texts_lock:
        _texts_cache[key] = texts
    return texts


def select_texts(special: SpecialTexts, template_source: str) -> tuple[str, ...]:
    """The texts to break, from a vocabulary's special tokens and a template's source.

    A one-character text cannot be broken from inside, so it is left out.
    """
    chosen = set(special.control)
    # USER_DEFINED tokens are ordinary text to the model, unless the template writes them
    # as markup; a whitespace one is never markup and cannot be broken visibly-neutrally.
    chosen.update(t for t in special.user_defined if not t.isspace() and t in template_source)
    # llama.cpp makes these CONTROL by name whatever the file says (a misconverted file)
    chosen.update(t for t in PROMOTED_TO_CONTROL if t in template_source)
    return tuple(sorted((t for t in chosen if len(t) >= 2), key=lambda t: (-len(t), t)))


def neutralise_messages(messages: Sequence[MessagePart], texts: Sequence[str]) -> list[MessagePart]:
    """``messages`` with every control text in their caller strings broken.

    Messages with nothing to break are returned as they are (the same objects); the
    others are copies. Pure: the input is not changed.
    """
    return neutraliser(tuple(texts)).messages(messages)


def neutralise_tools(
    tools: list[dict[str, Any]] | None, texts: Sequence[str]
) -> list[dict[str, Any]] | None:
    """The template's ``tools`` with every control text in every string broken: the
    names, descriptions, and anything in the schemas (enum values, defaults, titles,
    property names). Pure; the input is returned as it is when nothing changes."""
    if not tools:
        return tools
    cleaned: list[dict[str, Any]] = neutraliser(tuple(texts)).value(tools)
    return tools if cleaned == tools else cleaned


@functools.lru_cache(maxsize=16)
def neutraliser(texts: tuple[str, ...]) -> Neutraliser:
    """The compiled Neutraliser for ``texts`` (one per model and template)."""
    return Neutraliser(texts)


class Neutraliser:
    """One compiled search for a set of control texts, and what breaks them."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = tuple(sorted({t for t in texts if len(t) >= 2}, key=lambda t: (-len(t), t)))
        self.separator = next(
            (s for s in SEPARATORS if not any(s in t for t in self.texts)), SEPARATORS[0]
        )
        if any(self.separator in t for t in self.texts):
            # every candidate occurs in some control text: drop those texts rather than
            # risk an insertion that completes one (no real vocabulary comes close)
            self.texts = tuple(t for t in self.texts if self.separator not in t)
        self.pattern = _compile(self.texts) if self.texts else None

    def text(self, value: str) -> str:
        """``value`` with no control text left in it."""
        pattern = self.pattern
        if pattern is None:
            return value
        separator = self.separator

        def broken(match: re.Match[str]) -> str:
            found = match.group()
            return found[0] + separator + found[1:]

        value, count = pattern.subn(broken, value)
        # Matches do not overlap, so a text that started inside one found (or that the
        # break leaves whole in its tail) is only found on the next pass. Each pass puts
        # a separator between two characters that had none, and no control text holds a
        # separator, so this ends; real text needs one pass, forged text at most two.
        while count:
            value, count = pattern.subn(broken, value)
        return value

    def messages(self, messages: Sequence[MessagePart]) -> list[MessagePart]:
        return [self.message(m) for m in messages]

    def message(self, message: MessagePart) -> MessagePart:
        changes: dict[str, Any] = {}
        if isinstance(message.content, str):
            content = self.text(message.content)
            if content != message.content:
                changes["content"] = content
        for field in ("tool_call_id", "name"):
            value = getattr(message, field, None)
            if isinstance(value, str):
                cleaned = self.text(value)
                if cleaned != value:
                    changes[field] = cleaned
        calls = getattr(message, "tool_calls", None)
        if calls:
            cleaned_calls = [self._call(call) for call in calls]
            if cleaned_calls != calls:
                changes["tool_calls"] = cleaned_calls
        if not changes:
            return message
        if dataclasses.is_dataclass(message):
            return dataclasses.replace(message, **changes)
        # a message object of another shape (validation normally makes MessageParts)
        fields = {
            "role": message.role,
            "content": message.content,
            "tool_calls": getattr(message, "tool_calls", None),
            "tool_call_id": getattr(message, "tool_call_id", None),
            "name": getattr(message, "name", None),
        }
        return MessagePart(**{**fields, **changes})

    def _call(self, call: Any) -> Any:
        """One OpenAI-shape tool call: every string broken, the arguments as JSON."""
        if not isinstance(call, dict):
            return call
        cleaned: dict[Any, Any] = {}
        for key, value in call.items():
            if key == "function" and isinstance(value, dict):
                value = {
                    k: self.json_text(v)
                    if k == "arguments" and isinstance(v, str)
                    else self.value(v)
                    for k, v in value.items()
                }
            else:
                value = self.value(value)
            cleaned[key] = value
        return cleaned

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) broken."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def json_text(self, raw: str) -> str:
        """A JSON document (tool call arguments) with no control text in it, read raw or
        decoded: a template may print the string or its parsed value, and an escape such
        as ``\\u003c|im_end|\\u003e`` hides a control text from a search of the raw one.
        """
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):  # (nested past the decoder: not JSON here)
            return self.text(raw)  # not JSON: printed as text, if at all
        try:
            cleaned = self.value(decoded)
        except RecursionError:
            # too deep to check, and a template may print the decoded value
            raise LLMInvalidRequestError("tool call arguments are nested too deeply") from None
        out = self.text(raw)
        if out == raw and cleaned == decoded:
            return raw
        try:
            if json.loads(out) == cleaned:
                return out  # breaking the raw text sufficed: its formatting is kept
        except ValueError:
            pass
        return json.dumps(cleaned, ensure_ascii=False)


def _compile(texts: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern matching any of ``texts``, the longest at a given place first.

    A trie rather than an alternation: Python's re tries an alternation's branches one by
    one, 6,249 of them at every "<" for Gemma 3, while a trie costs one step a character.
    """
    try:
        return re.compile(_trie_regex(texts))
    except (RecursionError, re.error):
        # a pathological vocabulary nesting too deep for re: the slow, plain form
        return re.compile("|".join(re.escape(t) for t in texts))


def _trie_regex(texts: Iterable[str]) -> str:
    root: dict[str, Any] = {}
    for text in texts:
        node = root
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}  # "" is never a character: it marks the end of a text
    return _node_regex(root)


def _node_regex(node: dict[str, Any]) -> str:
    run = []
    # a chain of single children is one literal: fewer groups, shallower nesting
    while "" not in node and len(node) == 1:
        ((char, node),) = node.items()
        run.append(re.escape(char))
    branches = [
        re.escape(char) + _node_regex(child) for char, child in sorted(node.items()) if char
    ]
    if not branches:
        return "".join(run)
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:
        # a text ends here and longer ones go on: greedy, so the longest is tried first
        body = "(?:" + body + ")?"
    return "".join(run) + body
