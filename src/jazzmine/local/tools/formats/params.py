"""Learning how a template writes arguments one parameter at a time (``Params``), from
its renderings of a call with two string parameters and with a number: what precedes
each key, what stands between a key and its value, what closes a value (which may
repeat the key: ``<city>Paris</city>``), and what separates two parameters."""

from __future__ import annotations

from ...template.diff import common_prefix, common_suffix
from ...template.engine.source import ChatTemplate
from . import probe as P
from .shape import KEY_SLOT, Params

_OPENERS = " \t\r\n<[{(\"',"


def from_boundary(text: str) -> str:
    """``text`` from where markup may start (a common suffix may begin mid-marker)."""
    if not text or text[0] in _OPENERS:
        return text
    first = text.find("<")
    if first > 0 and ">" in text[:first]:
        return text[text.index(">") + 1 :]  # the end of the marker before it
    cut = min((text.find(c) for c in _OPENERS if c in text), default=len(text))
    return text[cut:] if cut <= 3 else text


def to_boundary(text: str) -> str:
    """``text`` up to where markup ends (a common prefix may stop mid-marker)."""
    opening = text.rfind("<")
    if opening >= 0 and ">" not in text[opening:]:
        return text[:opening]
    return text


def params_span(text: str, key: str, value: str, params: Params) -> tuple[int, int] | None:
    written = key + params.string_open + value + params.string_end(key)
    at = text.find(written)
    if at < 0 or not text[:at].endswith(params.key_open):
        return None
    return at - len(params.key_open), at + len(written)


def learn_params(
    template: ChatTemplate, lead: int, s1: str, deadline: float | None = None
) -> Params | None:
    """Parameters written one by one: learnt from two string parameters and a number."""
    two, number = (
        P.reply(template, P.calls_turn(P.call(P.NAME_ONE, arguments, P.ID_ONE)), deadline)
        for arguments in P.PARAMS_PROBES
    )
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
    key_open = from_boundary(pre[len(pre) - common_suffix(pre, between) :])
    rest = between[: len(between) - len(key_open)]
    # a closing that repeats the key (``</arg_one>``, ``</arg_two>``) holds KEY_SLOT
    rest, post = rest.replace(P.KEY_ONE, KEY_SLOT, 1), post.replace(P.KEY_TWO, KEY_SLOT, 1)
    string_close = to_boundary(rest[: common_prefix(rest, post)])
    separator = rest[len(string_close) :]
    if KEY_SLOT in separator:
        return None  # the key again, but not where the next one's is
    # a number: the text around it, and what follows the single string value in s1
    kn = sn.find(P.KEY_NUM)
    vn = sn.find(str(P.NUMBER), kn)
    v_one = s1.find(P.VALUE_ONE)
    if kn < 0 or vn < 0 or v_one < 0:
        return None
    value_open = sn[kn + len(P.KEY_NUM) : vn]
    after_number = sn[vn + len(str(P.NUMBER)) :].replace(P.KEY_NUM, KEY_SLOT, 1)
    follows = s1[v_one + len(P.VALUE_ONE) + len(string_close.replace(KEY_SLOT, P.KEY_ONE)) :]
    value_close = string_close
    if after_number.endswith(follows):
        value_close = after_number[: len(after_number) - len(follows)]
    if not string_open and not string_close:
        return None  # a string value would have no end
    return Params(key_open, string_open, string_close, value_open, value_close, separator)
