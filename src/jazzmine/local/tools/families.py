"""Which tool-call format a chat template teaches its model: the families.

llama.cpp (``common/chat.cpp`` and its differential "autoparser",
``common/chat-diff-analyzer.cpp``) finds a template's format by rendering an assistant
message with and without a tool call and reading the difference. The families it finds
for the templates jazzmine ships fixtures of are few and recognisable from the template
source by the markup that template prints around a call, so they are matched here by
that markup. A template none of them matches has its own format learnt (``formats``)
when it writes calls; else it gets the "generic" family: the tool list goes into the
system message as text and the model answers with a JSON envelope that
a grammar holds it to (see ``docs/tools.md``).

=============  =========================================================  ===============
family         a call, as the template prints it                          templates
=============  =========================================================  ===============
hermes         ``<tool_call>\\n{"name": N, "arguments": {...}}\\n</tool_call>``  Qwen 2.5, Qwen3,
                                                                           Hermes 2/3
llama3         ``{"name": N, "parameters": {...}}`` as the whole reply      Llama 3.1-3.3
               (``<|python_tag|>`` may come first)
mistral_nemo   ``[TOOL_CALLS][{"name": N, "arguments": {...}, "id": I}]``  Mistral Nemo
mistral        ``[TOOL_CALLS]N[CALL_ID]I[ARGS]{...}`` (``[CALL_ID]`` only   Mistral Small
               when the template has it)                                   3.2, Devstral
derived        whatever the template writes, learnt by rendering it       templates that
               (``formats``; ``derived_family``)                           write calls and
                                                                           match none above
generic        the JSON envelope of docs/tools.md                         anything else
=============  =========================================================  ===============

The four hand-written families stay because they read more than their template
writes (key order, OpenAI's wrapper, Llama 3's bare objects and built-ins, Mistral's
older JSON list); a learnt format reads what its template writes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from .formats.shape import CallFormat

PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True)
class Family:
    """A tool-call format."""

    name: str
    # the template prints the tool list itself: tools go into its context
    native: bool
    # the text every call starts with ("" when a call is recognised by its shape)
    trigger: str
    # markup the model writes as special tokens: llama-server must print them
    # (its request field preserved_tokens) and a lazy grammar's trigger must be one
    markers: tuple[str, ...]
    # several calls in one reply are possible
    parallel: bool = True
    # ids the template needs when calls are sent back: "openai" or "mistral" (9 alnum)
    id_style: str = "openai"
    # the format carries a call id written by the model (Mistral's [CALL_ID], "id")
    model_ids: bool = False
    # family "derived": the format learnt from the template (tools.formats)
    format: CallFormat | None = None


def derived_family(fmt: CallFormat) -> Family:
    """The family of a format learnt from a template (``formats.derive``)."""
    return Family(
        "derived",
        True,
        fmt.trigger,
        fmt.markers,
        parallel=fmt.parallel,
        model_ids=fmt.has_ids,
        format=fmt,
    )


HERMES = Family("hermes", True, "<tool_call>", ("<tool_call>", "</tool_call>"))
# Llama 3.x templates refuse more than one call in a message ("This model only supports
# single tool-calls at once!").
LLAMA3 = Family("llama3", True, "", ("<|python_tag|>",), parallel=False)
MISTRAL_NEMO = Family(
    "mistral_nemo", True, "[TOOL_CALLS]", ("[TOOL_CALLS]",), id_style="mistral", model_ids=True
)
MISTRAL = Family("mistral", True, "[TOOL_CALLS]", ("[TOOL_CALLS]", "[ARGS]"), id_style="mistral")
MISTRAL_WITH_IDS = Family(
    "mistral",
    True,
    "[TOOL_CALLS]",
    ("[TOOL_CALLS]", "[CALL_ID]", "[ARGS]"),
    id_style="mistral",
    model_ids=True,
)
GENERIC = Family("generic", False, "", ())

FAMILIES = {f.name: f for f in (HERMES, LLAMA3, MISTRAL_NEMO, MISTRAL, GENERIC)}

# JSON's whitespace, left out when an object's opening is compared
_NO_JSON_SPACE = str.maketrans("", "", " \t\r\n")


@dataclass(frozen=True)
class CallOpenings:
    """Where a call may begin after some text: ``words`` as written (a trigger, the
    python tag), ``objects`` as the opening of a JSON object compared with whitespace
    left out (``{"name":"get_weather"``), so that ``{ "name" : "get_weather"`` counts.

    ``find`` says where a call surely begins; ``pending`` where text begins that may
    still grow into the start of one (a stream holds it back). Both look only at the
    text from ``begin`` on: what came before was already judged.
    """

    words: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()

    def find(self, text: str, begin: int = 0) -> int:
        """The first index >= ``begin`` where an opening is complete, or -1."""
        found = [i for i in (text.find(word, begin) for word in self.words) if i >= 0]
        if self.objects:
            found += [i for i in self._braces(text, begin) if self._state(text, i) == "open"]
        return min(found, default=-1)

    def pending(self, text: str, begin: int = 0) -> int:
        """The first index >= ``begin`` from which ``text`` may still become an
        opening (``len(text)`` when none can)."""
        held = [len(text)]
        for word in self.words:
            for size in range(min(len(word) - 1, len(text) - begin), 0, -1):
                if text.endswith(word[:size]):
                    held.append(len(text) - size)
                    break
        if self.objects:
            held += [i for i in self._braces(text, begin) if self._state(text, i) == "maybe"]
        return min(held)

    def _braces(self, text: str, begin: int) -> list[int]:
        found: list[int] = []
        at = text.find("{", begin)
        while at >= 0:
            found.append(at)
            at = text.find("{", at + 1)
        return found

    def _state(self, text: str, at: int) -> str:
        """Whether an object opening starts at ``at``: "open", "maybe" (the text so far
        may still become one) or "no"."""
        openings, prefixes, sizes = self._tables
        longest = sizes[-1]
        window = 2 * longest
        seen = text[at : at + window].translate(_NO_JSON_SPACE)
        while len(seen) < longest and at + window < len(text):  # much whitespace
            window *= 2
            seen = text[at : at + window].translate(_NO_JSON_SPACE)
        seen = seen[:longest]
        if any(seen[:size] in openings for size in sizes):
            return "open"
        return "maybe" if seen in prefixes else "no"

    @functools.cached_property
    def _tables(self) -> tuple[frozenset[str], frozenset[str], tuple[int, ...]]:
        """The openings, every proper prefix of one, and their lengths (ascending)."""
        prefixes = {opening[:size] for opening in self.objects for size in range(len(opening))}
        sizes = tuple(sorted({len(opening) for opening in self.objects}))
        return frozenset(self.objects), frozenset(prefixes), sizes


def call_openings(family: Family, names: Sequence[str]) -> CallOpenings:
    """How a call of ``family`` to one of ``names`` may begin after text. (At the very
    start of a reply, llama3 and generic replies that open with "{" are read whole.)"""
    if family.trigger:
        return CallOpenings(words=(family.trigger,))
    if family.format is not None:  # a call only at the reply's start (stream.py)
        return CallOpenings()
    if family.name == "llama3":
        heads = ('{{"name":"{}"', '{{"type":"function","function":{{"name":"{}"')
        return CallOpenings((PYTHON_TAG,), tuple(h.format(n) for h in heads for n in names))
    return CallOpenings(objects=('{"tool_calls":', '{"content":'))


def detect_family(source: str | None) -> Family:
    """The family of the template ``source`` (None: no template, so generic)."""
    if not source:
        return GENERIC

    def has(*needles: str) -> bool:
        return all(needle in source for needle in needles)

    if has("[TOOL_CALLS]"):
        if has("[ARGS]"):
            return MISTRAL_WITH_IDS if has("[CALL_ID]") else MISTRAL
        return MISTRAL_NEMO
    # Qwen3-Coder, MiniMax and GLM also print <tool_call> but put XML-like tags for the
    # function and its arguments inside: those formats are learnt (derived_family).
    if has("<tool_call>") and not any(
        needle in source for needle in ("<function=", "<invoke", "<arg_key>", "<parameter=")
    ):
        return HERMES
    if has("<|start_header_id|>", '"parameters"') and (has("tool_call") or has("<|python_tag|>")):
        return LLAMA3
    return GENERIC
