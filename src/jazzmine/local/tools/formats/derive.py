"""Learning a template's tool-call format by rendering it (``derive_format``).

The template is rendered on probe turns (``probe``): plain text, one call, the same
call with two string parameters, one with a number, two calls. Where the probe's
name, id and arguments land in the text are the holes of the call; what the renderings
share around them is its markup: the text before the first call and after the last is
the section's opening and closing, what stands between two calls is one call's end,
the separator and the next call's start, and what stands between two parameters is
one parameter's end, a separator and the next one's start. The differences are cut
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
from .shape import ARGS, CALL_ID, INDEX, NAME, CallFormat, Params

Hole = tuple[int, int, str]  # start, end, kind
# a 1-tuple, so that "cannot be learnt" is cached too
_cache: BoundedCache[tuple[str, str, str], tuple[CallFormat | None]] = BoundedCache()
_OPENERS = " \t\r\n<[{(\"',"
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
        params = _params(template, lead, s1, deadline)
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
            head = _from_boundary(before[len(before) - _suffix(before, mid) :])
            rest = mid[: len(mid) - len(head)]
            head_pieces = _numbered(head, mid)
            tail = _to_boundary(rest[: common_prefix(rest, after)])
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
        turn_end=turn_end,
    )
    tag = fmt.leading_tag
    if tag and tag != fmt.trigger and plain is not None and tag not in plain:
        # a tag only calls write starts them alone (a model's special token)
        fmt = dataclasses.replace(fmt, start=tag)
    return fmt if _reads_back(fmt, s1) else None


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


def _from_boundary(text: str) -> str:
    """``text`` from where markup may start (a common suffix may begin mid-marker)."""
    if not text or text[0] in _OPENERS:
        return text
    first = text.find("<")
    if first > 0 and ">" in text[:first]:
        return text[text.index(">") + 1 :]  # the end of the marker before it
    cut = min((text.find(c) for c in _OPENERS if c in text), default=len(text))
    return text[cut:] if cut <= 3 else text


def _to_boundary(text: str) -> str:
    """``text`` up to where markup ends (a common prefix may stop mid-marker)."""
    opening = text.rfind("<")
    if opening >= 0 and ">" not in text[opening:]:
        return text[:opening]
    return text


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
        span = _params_span(text, key, value, params)
    if span is None:
        return None
    holes.append((*span, ARGS))
    holes.sort()
    for (_, end, _), (start, _, _) in itertools.pairwise(holes):
        if start < end:
            return None  # overlapping: the name written inside the arguments
    return holes


def _params_span(text: str, key: str, value: str, params: Params) -> tuple[int, int] | None:
    at = text.find(key + params.string_open + value + params.string_close)
    if at < 0 or not text[:at].endswith(params.key_open):
        return None
    end = at + len(key + params.string_open + value + params.string_close)
    return at - len(params.key_open), end


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


def _params(template: ChatTemplate, lead: int, s1: str, deadline: float | None) -> Params | None:
    """Parameters written one by one: learnt from two string parameters and a number."""
    both = {P.KEY_ONE: P.VALUE_ONE, P.KEY_TWO: P.VALUE_TWO}
    two = P.reply(template, P.calls_turn(P.call(P.NAME_ONE, both, P.ID_ONE)), deadline)
    numbered = P.calls_turn(P.call(P.NAME_ONE, {P.KEY_NUM: P.NUMBER}, P.ID_ONE))
    number = P.reply(template, numbered, deadline)
    if two is None or number is None:
        return None
    s2, sn = two[lead:], number[lead:]
    named = s2.find(P.NAME_ONE) + len(P.NAME_ONE)
    k1 = s2.find(P.KEY_ONE, named)
    v1 = s2.find(P.VALUE_ONE, k1)
    k2 = s2.find(P.KEY_TWO, v1)
    v2 = s2.find(P.VALUE_TWO, k2)
    if min(named, k1, v1, k2, v2) < 0 or named < len(P.NAME_ONE):
        return None
    pre, string_open = s2[named:k1], s2[k1 + len(P.KEY_ONE) : v1]
    between, post = s2[v1 + len(P.VALUE_ONE) : k2], s2[v2 + len(P.VALUE_TWO) :]
    key_open = _from_boundary(pre[len(pre) - common_suffix(pre, between) :])
    rest = between[: len(between) - len(key_open)]
    string_close = _to_boundary(rest[: common_prefix(rest, post)])
    separator = rest[len(string_close) :]
    # a number: the text around it, and what follows the single string value in s1
    kn = sn.find(P.KEY_NUM)
    vn = sn.find(str(P.NUMBER), kn)
    v_one = s1.find(P.VALUE_ONE)
    if kn < 0 or vn < 0 or v_one < 0:
        return None
    value_open = sn[kn + len(P.KEY_NUM) : vn]
    after_number = sn[vn + len(str(P.NUMBER)) :]
    follows = s1[v_one + len(P.VALUE_ONE) + len(string_close) :]
    value_close = string_close
    if after_number.endswith(follows):
        value_close = after_number[: len(after_number) - len(follows)]
    if not string_open and not string_close:
        return None  # a string value would have no end
    return Params(key_open, string_open, string_close, value_open, value_close, separator)


def _reads_back(fmt: CallFormat, text: str) -> bool:
    """The learnt format reads the probe's own call back."""
    from .read import read_calls

    try:
        _, calls, _ = read_calls(text, fmt, P.PROBE_SCHEMAS)
    except UnreadableCall:
        return False
    wanted = [(P.NAME_ONE, {P.KEY_ONE: P.VALUE_ONE})]
    return [(c.name, c.arguments) for c in calls] == wanted
