"""Learning a template's tool-call format by rendering it (``derive_format``).

The template is rendered on probe turns (``probe``): plain text, one call, the same
call with two string parameters, one with a number, two calls. Where the probe's
name, id and arguments land in the text are the holes of the call; what the renderings
share around them is its markup: the text before the first call and after the last is
the section's opening and closing, what stands between two calls is one call's end,
the separator and the next call's start, and what stands between two parameters is
one parameter's end, a separator and the next one's start (``params``; a parameter's
end may repeat its key, ``<city>Paris</city>``). Text written before every tag
(MiniMax M3's ``]<]minimax[>[``) is kept as a marker of its own. The differences are cut
at markup boundaries (``<...>``) so that a marker is never split. llama.cpp learns the
same things the same way (``common/chat-diff-analyzer.cpp``); this is our own reading.

What it cannot learn gives None (the caller falls back): a template that writes no
call after its generation prompt, or writes the probe's arguments in no shape that
``read`` knows (JSON object, or parameters with the key before the value).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

from ...template.diff import common_prefix, common_suffix, marker_start
from ...template.engine.cache import BoundedCache
from ...template.engine.source import ChatTemplate
from ..json_read import UnreadableCall, json_at
from . import probe as P
from .params import from_boundary, learn_params, params_span, to_boundary
from .shape import ARGS, CALL_ID, INDEX, NAME, CallFormat, Params

Hole = tuple[int, int, str]  # start, end, kind
# a 1-tuple, so that "cannot be learnt" is cached too
_cache: BoundedCache[tuple[str, str, str], tuple[CallFormat | None]] = BoundedCache()
# a tag with a name: "<tool_call>", "</invoke>", '<invoke name="x">'
_TAG = re.compile(r"<[/\w][^<>]*>")
# an empty reasoning block the template writes before a call (Command R7B's
# "<|START_THINKING|><|END_THINKING|>"): the reasoning splitter takes it, not the call
_THINKING = re.compile(r"(?:\s*<[^<>]*think[^<>]*>)+\s*", re.IGNORECASE)


def derive_format(template: ChatTemplate, deadline: float | None = None) -> CallFormat | None:
    """The call format ``template`` writes, or None when it cannot be learnt. The probes
    render within ``deadline`` (past it, DeadlineExceeded propagates, nothing cached)."""
    key = (template.source, template.bos_token, template.eos_token)
    found = _cache.get(key)
    if found is None:
        found = (_derive(template, deadline),)
        _cache.put(key, found)
    return found[0]


def _derive(template: ChatTemplate, deadline: float | None) -> CallFormat | None:
    one = P.call(P.NAME_ONE, {P.KEY_ONE: P.VALUE_ONE}, P.ID_ONE)
    single = P.reply(template, P.calls_turn(one), deadline)
    if single is None or P.NAME_ONE not in single:
        return None
    plain = P.reply(template, P.text_turn(), deadline)
    lead = _lead(plain, single)
    s1 = single[lead:]
    params = None
    if _json_args(s1, {P.KEY_ONE: P.VALUE_ONE}) is None:
        params = learn_params(template, lead, s1, deadline)
        if params is None:
            return None
    holes1 = _holes(s1, P.NAME_ONE, P.ID_ONE, P.KEY_ONE, P.VALUE_ONE, params)
    if holes1 is None:
        return None
    first, last = holes1[0][0], holes1[-1][1]
    before, after = s1[:first], s1[last:]
    call = _pieces(s1, holes1)
    head, tail, separator = "", "", ""
    head_pieces: list[tuple[str, str]] = []
    two = P.call(P.NAME_TWO, {P.KEY_ONE: P.VALUE_TWO}, P.ID_TWO)
    double = P.reply(template, P.calls_turn(one, two), deadline)
    parallel = False
    if double is not None and P.NAME_TWO in double:
        s2 = double[_lead(plain, double) :]
        split = s2.find(P.NAME_TWO)
        holes_a = _holes(s2[:split], P.NAME_ONE, P.ID_ONE, P.KEY_ONE, P.VALUE_ONE, params)
        end_a = holes_a[-1][1] if holes_a else split
        holes_b = _holes(s2[end_a:], P.NAME_TWO, P.ID_TWO, P.KEY_ONE, P.VALUE_TWO, params)
        if holes_a and holes_b:
            mid = s2[end_a : end_a + holes_b[0][0]]
            head = from_boundary(before[len(before) - _suffix(before, mid) :])
            rest = mid[: len(mid) - len(head)]
            head_pieces = _numbered(head, mid)
            tail = to_boundary(rest[: common_prefix(rest, after)])
            separator = rest[len(tail) :]
            parallel = True
            call = _indexed(call, _pieces(s2[end_a:], holes_b))
    if not parallel:
        head, tail = before, after
        head_pieces = [("lit", head)]
    close = after[len(tail) :]
    turn_end = ""
    if plain is not None:  # what every turn ends with is no part of the calls
        kept = close[: len(close) - common_suffix(close, plain)]
        opening = kept.rfind("<")
        if opening >= 0 and ">" not in kept[opening:] and ">" in close[opening:]:
            kept = close[: close.index(">", opening) + 1]  # not into a marker
        close, turn_end = kept, close[len(kept) :]
    section_open = before[: len(before) - len(head)]
    thinking = _THINKING.match(section_open)
    fmt = CallFormat(
        open=section_open[thinking.end() :] if thinking else section_open,
        close=close,
        separator=separator,
        call=(*head_pieces, *call, ("lit", tail)),
        params=params,
        parallel=parallel,
        tag_prefix=_tag_prefix(s1),
        turn_end=turn_end,
    )
    tag = fmt.leading_tag
    if tag and tag != fmt.trigger and plain is not None and tag not in plain:
        # a tag only calls write starts them alone (a model's special token)
        fmt = dataclasses.replace(fmt, start=tag)
    return fmt if _reads_back(fmt, template, lead, s1, deadline) else None


def _lead(plain: str | None, single: str) -> int:
    """How much of the call turn is the text any turn starts with ("</think>\\n\\n")."""
    if plain is None:
        return 0
    shared = common_prefix(plain, single)
    opening = marker_start(single, shared)
    if opening < shared:
        shared = opening
    elif 0 < shared < len(single) and single[shared - 1] not in " \t\r\n>]":
        # inside a word (" to=user" / " to=NAME"): the word belongs to the call
        word = max(single.rfind(c, 0, shared) for c in " \n\t>]")
        shared = word + 1
    return shared


def _tag_prefix(call: str) -> str:
    """The text written before every tag of ``call`` (MiniMax M3's "]<]minimax[>["),
    or "" when the tags share none."""
    starts = [m.start() for m in _TAG.finditer(call)]
    if len(starts) < 2:
        return ""
    prefix = call[: starts[0]]
    for at in starts[1:]:
        prefix = prefix[len(prefix) - common_suffix(prefix, call[:at]) :]
    return prefix if len(prefix) >= 3 and not any(c.isspace() for c in prefix) else ""


def _suffix(before: str, mid: str) -> int:
    """The common suffix of the first call's opening and what precedes the second,
    where a digit may stand for another (the call's number: ``"tool_call_id": "0"``)."""
    n = 0
    while n < min(len(before), len(mid)):
        a, b = before[-1 - n], mid[-1 - n]
        if a != b and not (a.isdigit() and b.isdigit()):
            break
        n += 1
    return n


def _numbered(head: str, mid: str) -> list[tuple[str, str]]:
    """``head`` as pieces, with an index hole where the second call's number differs."""
    other = mid[len(mid) - len(head) :]
    pieces: list[tuple[str, str]] = []
    text = ""
    for a, b in zip(head, other, strict=True):
        if a == b:
            text += a
        elif not (pieces and pieces[-1][0] == INDEX and not text):  # one number
            pieces += [("lit", text), (INDEX, "")]
            text = ""
    return [*pieces, ("lit", text)]


def _json_args(text: str, arguments: dict[str, Any]) -> tuple[int, int] | None:
    """The span of the JSON object ``arguments`` in ``text``."""
    at = text.find("{")
    while at >= 0:
        try:
            value, end = json_at(text, at)
        except UnreadableCall:
            value, end = None, at
        if value == arguments:
            return at, end
        at = text.find("{", at + 1)
    return None


def _holes(
    text: str, name: str, ident: str, key: str, value: str, params: Params | None
) -> list[Hole] | None:
    """Where the call's name(s), id and arguments are in ``text`` (sorted)."""
    holes: list[Hole] = []
    for word, kind in ((name, NAME), (ident, CALL_ID)):
        at = text.find(word)
        while at >= 0:
            holes.append((at, at + len(word), kind))
            at = text.find(word, at + 1)
    if not any(kind == NAME for *_, kind in holes):
        return None
    if params is None:
        span = _json_args(text, {key: value})
    else:
        span = params_span(text, key, value, params)
    if span is None:
        return None
    holes.append((*span, ARGS))
    holes.sort()
    for (_, end, _), (start, _, _) in itertools.pairwise(holes):
        if start < end:
            return None  # overlapping: the name written inside the arguments
    return holes


def _pieces(text: str, holes: list[Hole]) -> list[tuple[str, str]]:
    """The call from its first hole to its last: holes and the literal text between."""
    out: list[tuple[str, str]] = []
    for index, (start, _, kind) in enumerate(holes):
        if index:
            out.append(("lit", text[holes[index - 1][1] : start]))
        out.append((kind, ""))
    return out


def _indexed(call: list[tuple[str, str]], second: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Literal text that differs between the first and second call only by a number
    (Kimi's ``functions.NAME:0``) holds the call's index."""
    if [k for k, _ in call] != [k for k, _ in second]:
        return call
    out: list[tuple[str, str]] = []
    for (kind, a), (_, b) in zip(call, second, strict=True):
        if kind != "lit" or a == b:
            out.append((kind, a))
            continue
        p = common_prefix(a, b)
        s = min(common_suffix(a, b), len(a) - p, len(b) - p)
        if a[p : len(a) - s].isdigit() and b[p : len(b) - s].isdigit():
            out += [("lit", a[:p]), (INDEX, ""), ("lit", a[len(a) - s :])]
        else:
            out.append((kind, a))
    return out


def _reads_back(
    fmt: CallFormat, template: ChatTemplate, lead: int, text: str, deadline: float | None
) -> bool:
    """The learnt format reads the probe's own calls back: the one call, and where
    the arguments are parameters, the calls with two of them and with a number."""
    from .read import read_calls

    probes: list[tuple[str, dict[str, Any]]] = [(text, {P.KEY_ONE: P.VALUE_ONE})]
    if fmt.params is not None:
        for arguments in P.PARAMS_PROBES:
            turn = P.calls_turn(P.call(P.NAME_ONE, arguments, P.ID_ONE))
            written = P.reply(template, turn, deadline)
            if written is None:
                return False
            probes.append((written[lead:], arguments))
    for written, arguments in probes:
        try:
            _, calls, _ = read_calls(written, fmt, P.PROBE_SCHEMAS)
        except UnreadableCall:
            return False
        if [(c.name, c.arguments) for c in calls] != [(P.NAME_ONE, arguments)]:
            return False
    return True
