"""``CallFormat``: how a chat template writes its tool calls, as ``derive`` learnt it.

A call section is ``open``, then one or more calls separated by ``separator``, then
``close``. A call is a sequence of pieces: literal text and holes (the function's name,
a call id the model writes, a call's index, the arguments). The arguments are either
one JSON object or a list of parameters (``Params``: ``<parameter=k>v</parameter>``,
``<arg_key>k</arg_key><arg_value>v</arg_value>``, ``k='v'``, ``<k>v</k>``, ...), where a
string value is raw text up to its closing markup and any other value is JSON. A
closing may name the parameter (``</k>``): ``KEY_SLOT`` stands for its key there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# hole kinds in CallFormat.call
NAME, CALL_ID, INDEX, ARGS = "name", "id", "index", "args"
# where a parameter's closing repeats its key (MiniMax M3's ``<city>Paris</city>``); a
# character no template writes
KEY_SLOT = "\x00"


@dataclass(frozen=True)
class Params:
    """Arguments written one parameter at a time:
    ``key_open KEY string_open VALUE string_close`` for a string value and
    ``key_open KEY value_open VALUE value_close`` for a JSON one, ``separator`` between."""

    key_open: str
    string_open: str
    string_close: str
    value_open: str
    value_close: str
    separator: str

    def string_end(self, key: str) -> str:
        """The closing of the string value of parameter ``key``."""
        return self.string_close.replace(KEY_SLOT, key)

    def value_end(self, key: str) -> str:
        """The closing of the JSON value of parameter ``key``."""
        return self.value_close.replace(KEY_SLOT, key)


@dataclass(frozen=True)
class CallFormat:
    """A template's tool-call format (see the module docstring)."""

    open: str
    close: str
    separator: str
    # ("lit", text) pieces and holes (NAME, CALL_ID, INDEX, ARGS paired with ""), in order
    call: tuple[tuple[str, str], ...]
    # None: the arguments are one JSON object
    params: Params | None = None
    parallel: bool = True
    # the trigger, when shorter than the first word of markup (a tag of its own)
    start: str = ""
    # text the template writes before every tag (MiniMax M3's "]<]minimax[>["): a
    # marker of its own, likely one special token
    tag_prefix: str = ""
    # what the template closes every turn with after ``close`` (Kimi K3's
    # "<|close|>message<|sep|>"): no part of the calls, so no grammar asks for it, but a
    # model writes it before its stop, and the reader takes it when it is there
    turn_end: str = ""

    @property
    def head(self) -> str:
        """The literal text every call section starts with, up to its first hole."""
        text = self.open
        for kind, value in self.call:
            if kind != "lit":
                break
            text += value
        return text

    @property
    def trigger(self) -> str:
        """The text that surely starts a call section: ``start`` when derivation set
        it, else its first word of markup (""
        when it has none of its own, as when a call starts with the function's name)."""
        if self.start:
            return self.start
        words = self.head.split()
        return words[0] if words and re.search(r"[^\w\s]", words[0]) else ""

    @property
    def leading_tag(self) -> str:
        """The tag the trigger starts with ("" without one)."""
        tag = _SPECIAL.match(self.trigger)
        return tag.group(0) if tag else ""

    @property
    def markers(self) -> tuple[str, ...]:
        """Markup that may be special tokens: the trigger, tags (``<|...|>``,
        ``<tool_call>``) and ``[X]``."""
        texts = [self.open, self.close, *(v for k, v in self.call if k == "lit")]
        if self.params is not None:
            p = self.params
            texts += [p.key_open, p.string_open, p.string_close, p.value_open, p.value_close]
        # the trigger too: llama-server refuses a one-token trigger it may not print
        found: list[str] = [self.trigger] if self.trigger else []
        if self.tag_prefix:
            found.append(self.tag_prefix)
        for text in texts:
            if self.tag_prefix:
                text = text.replace(self.tag_prefix, " ")
            for marker in _SPECIAL.findall(text.replace(KEY_SLOT, " ")):
                if marker not in found:
                    found.append(marker)
        return tuple(found)

    @property
    def has_ids(self) -> bool:
        return any(kind == CALL_ID for kind, _ in self.call)


# tags and bracketed words, which tokenizers often hold as one special token
# (llama-server keeps only those that are one token: the rest cost nothing)
_SPECIAL = re.compile(r"<[^<>\s]+>|\[[A-Z_]{3,}\]")


def example_call(fmt: CallFormat, name: str, schema: Any) -> str:
    """A call to ``name`` written in ``fmt``, with placeholders for the values."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    keys = list(properties or {})
    if fmt.params is None:
        args = json.dumps({key: f"<{key}>" for key in keys})
    else:
        p = fmt.params
        units = [f"{p.key_open}{key}{p.string_open}<{key}>{p.string_end(key)}" for key in keys]
        args = p.separator.join(units)
    holes = {NAME: name, CALL_ID: "abcdefghi", INDEX: "0", ARGS: args}
    call = "".join(value if kind == "lit" else holes[kind] for kind, value in fmt.call)
    return f"{fmt.open}{call}{fmt.close}".strip()
