"""Text helpers of llama.cpp's template analysis: trimming, marker segments, diffs.

Mirrors ``common/chat-auto-parser-helpers.cpp`` (``trim_whitespace``,
``segmentize_markers``, ``calculate_diff_split``), which the reasoning detection uses to
compare renderings of probe conversations.
"""

from __future__ import annotations

from .engine.strings import ASCII_SPACE


def trim_ascii(text: str) -> str:
    """trim_whitespace: strip C isspace characters (the "C" locale), nothing else."""
    return text.strip(ASCII_SPACE)


def segments(text: str) -> list[tuple[bool, str]]:
    """segmentize_markers: (is_marker, text) runs; a marker is ``<...>`` or ``[...]``."""
    out: list[tuple[bool, str]] = []
    border, opener = 0, ""
    for pos, char in enumerate(text):
        if not opener and char in "<[":
            if border < pos:
                out.append((False, text[border:pos]))
            border, opener = pos, char
        elif opener and char == {"<": ">", "[": "]"}[opener]:
            out.append((True, text[border : pos + 1]))
            border, opener = pos + 1, ""
    if border < len(text):
        out.append((False, text[border:]))
    return out


def marker_start(text: str, pos: int) -> int:
    """``pos`` moved back to the start of a marker (``<...>``, ``[...]``) it falls inside."""
    opening = max(text.rfind("<", 0, pos), text.rfind("[", 0, pos))
    if opening >= 0 and not any(c in text[opening:pos] for c in ">]"):
        return opening
    return pos


def common_prefix(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share at their start."""
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def common_suffix(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share at their end."""
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def diff_split(left: str, right: str) -> tuple[str, str]:
    """calculate_diff_split: the (left, right) parts that differ, marker-aligned."""
    ls, rs = segments(left), segments(right)
    if not ls:
        return "", right
    if not rs:
        return left, ""
    l0, l1, r0, r1 = 0, len(ls) - 1, 0, len(rs) - 1
    left_done = right_done = False
    while l0 != l1 and r0 != r1:
        advanced = False
        if ls[l0] == rs[r0]:
            l0, r0, advanced = l0 + 1, r0 + 1, True
        if ls[l1] == rs[r1]:
            if l0 != l1:
                l1 -= 1
            else:
                left_done = True
            if r0 != r1:
                r1 -= 1
            else:
                right_done = True
            advanced = True
        if not advanced:
            break
    if l0 == l1 and r0 != r1:
        if ls[l0] == rs[r1]:
            r1 -= 1
            left_done = True
        elif ls[l0] == rs[r0]:
            r0 += 1
            left_done = True
    elif r0 == r1 and l0 != l1:
        if ls[l1] == rs[r0]:
            l1 -= 1
            right_done = True
        elif ls[l0] == rs[r0]:
            l0 += 1
            right_done = True
    elif l0 == l1 and r0 == r1 and ls[l0] == rs[r0] and ls[l0][0]:
        left_done = right_done = True
    text_suffix = not ls[l1][0] and not rs[r1][0]
    text_prefix = not rs[r0][0] and not ls[l0][0]
    rest_left = "".join(t for _, t in ls[l0 : l1 if left_done else l1 + 1])
    rest_right = "".join(t for _, t in rs[r0 : r1 if right_done else r1 + 1])
    suffix = common_suffix(rest_left, rest_right) if text_suffix else 0
    prefix = (
        common_prefix(rest_left[: len(rest_left) - suffix], rest_right[: len(rest_right) - suffix])
        if text_prefix
        else 0
    )
    diff_left = rest_left[prefix : len(rest_left) - suffix]
    diff_right = rest_right[prefix : len(rest_right) - suffix]
    if not diff_left and diff_right and right.startswith(left):
        return "", right[len(left) :]
    return diff_left, diff_right
