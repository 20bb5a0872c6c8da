"""How a template writes its reasoning block, learned by rendering the template itself.

``template/reasoning.py`` answers llama.cpp's question (does llama-server treat the
template as reasoning, with which delimiters); this answers the reader's: where in a
reply the thinking starts and stops, and what wraps the answer after it. As llama.cpp's
analyzer does, the template renders a finished assistant turn with a probe reasoning
and a probe answer, the same turn without the reasoning, and its generation prompt
with thinking on and off; comparing them gives

- the marker that opens the block (``<think>``, ``<|START_THINKING|>``, ...) and whether
  the generation prompt already wrote it (the reply then starts inside the block);
- the marker that closes it (``</think>``, ``[BEGIN FINAL RESPONSE]``, ``<|eom|>``, ...);
- what the template writes around the answer after the thinking (Cohere's
  ``<|START_TEXT|>...<|END_TEXT|>``, Muse's ``<|start|>assistant to=user<|message|>``).

The markers are whatever the template writes: no family is listed here. A template that
never shows ``reasoning_content`` gives None (see ``think_fallback``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DeadlineExceeded, LLMInvalidRequestError
from ..types import MessagePart
from .diff import common_prefix, common_suffix, marker_start, segments
from .engine.budget import TemplateLimitError, bounded_render, deadline_scope
from .engine.cache import BoundedCache
from .engine.jinja import compile_template
from .engine.source import ChatTemplate
from .markers import before_end_of_turn

# Probe texts no template writes by itself (no markers, no spaces to trim).
_USER = "USER_PROBE_TEXT"
_REASONING = "REASONING_PROBE_TEXT"
_ANSWER = "ANSWER_PROBE_TEXT"


@dataclass(frozen=True)
class ThinkingFormat:
    """A template's reasoning block, as it writes it."""

    start: str  # the opening marker ("" when none shows)
    end: str  # the closing marker
    # the end of the generation prompt when it opens the block itself ("" when it does
    # not): a prompt that ends so has the reply start inside the reasoning
    prompt_opening: str = ""
    # what the template writes before and after the answer that follows the thinking
    answer_start: str = ""
    answer_end: str = ""
    # the generation prompt closes an empty block even with thinking on (the template
    # thinks by another switch, Hunyuan's reasoning_effort): a reply may still start
    # inside the block, and then its first marker is the closing one
    prompt_closes: bool = False
    # the text between the reasoning and what follows, as the template writes it
    # (Qwen3's "\n</think>\n\n"): how a reasoning budget closes the block for the model
    closing: str = ""


_formats: BoundedCache[tuple[str, str, str], tuple[ThinkingFormat | None]] = BoundedCache()


def thinking_format(template: ChatTemplate, deadline: float | None = None) -> ThinkingFormat | None:
    """The template's reasoning block (cached); None when it writes none. The probes
    render within ``deadline`` (past it, DeadlineExceeded propagates, nothing cached)."""
    key = (template.source, template.bos_token, template.eos_token)
    cached = _formats.get(key)
    if cached is not None:
        return cached[0]
    found = None
    for field in ("reasoning_content", "thinking", "thinking_part"):
        try:
            found = _derive(_Renderer(template, deadline, field))
        except (LLMInvalidRequestError, TemplateLimitError):
            found = None  # a template that cannot render the probes shows no format
        if found is not None:
            break
    _formats.put(key, (found,))
    return found


# Templates that write reasoning only beside a tool call (Gemma 4, Command R7B) are
# probed with one.
_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_tool",
        "description": "A probe",
        "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}},
    },
}
_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "probe_tool", "arguments": '{"arg": "PROBE_ARG"}'},
}


class _Renderer:
    """Renders the probes as llama-server would: ``render`` with the reasoning as
    ``reasoning_content``; or the template run on messages carrying it where llama.cpp's
    own handlers put it: ``field="thinking"`` (GPT-OSS, LFM2), ``"thinking_part"`` (a
    typed content part, Ministral 3)."""

    def __init__(self, template: ChatTemplate, deadline: float | None, field: str) -> None:
        self.template, self.deadline, self.field = template, deadline, field

    def __call__(
        self, messages: list[MessagePart], prompt: bool, on: bool, with_tools: bool = False
    ) -> str:
        from .render import render  # render needs the capabilities, which need this module

        if self.field == "reasoning_content":
            return render(
                self.template,
                messages,
                add_generation_prompt=prompt,
                deadline=self.deadline,
                prefill_final=False,
                enable_thinking=on,
                tools=[_TOOL] if with_tools else None,
            )
        context: dict[str, Any] = {
            "messages": [_as_dict(m, self.field) for m in messages],
            "tools": [_TOOL] if with_tools else [],
            "bos_token": self.template.bos_token,
            "eos_token": self.template.eos_token,
            "add_generation_prompt": prompt,
            "enable_thinking": on,
        }
        with deadline_scope(self.deadline):
            try:
                return bounded_render(compile_template(self.template.source), context)
            except (DeadlineExceeded, TemplateLimitError):
                raise
            except Exception as exc:
                raise LLMInvalidRequestError(f"the template failed a probe: {exc}") from exc


def _as_dict(message: MessagePart, field: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.reasoning_content and field == "thinking_part":
        # Ministral 3: a typed part before the text (llama.cpp's ministral3 handler)
        thought = {"type": "thinking", "thinking": message.reasoning_content}
        out["content"] = [thought, {"type": "text", "text": message.content}]
    elif message.reasoning_content:
        out[field] = message.reasoning_content
    return out


def _last_marker(text: str) -> str:
    marked = [piece for is_marker, piece in segments(text.rstrip()) if is_marker]
    return marked[-1] if marked and text.rstrip().endswith(marked[-1]) else ""


def _derive(render: _Renderer) -> ThinkingFormat | None:
    template = render.template
    user = MessagePart("user", _USER)
    with_tools = False
    turn = render(
        [user, MessagePart("assistant", _ANSWER, reasoning_content=_REASONING)],
        False,
        True,
    )
    plain = render([user, MessagePart("assistant", _ANSWER)], False, True)
    at_r, at_a = turn.find(_REASONING), turn.find(_ANSWER)
    if at_r < 0 or at_a < at_r:
        # some templates show reasoning only beside a call
        with_tools, at_a = True, -1
        call = MessagePart("assistant", "", reasoning_content=_REASONING, tool_calls=[_CALL])
        turn = render([user, call], False, True, True)
        plain = render(
            [user, MessagePart("assistant", "", tool_calls=[_CALL])],
            False,
            True,
            True,
        )
        at_r = turn.find(_REASONING)
        if at_r < 0:
            return None
    if at_a >= 0:
        between = turn[at_r + len(_REASONING) : at_a]
    else:
        between = _before_shared_tail(turn, plain, at_r + len(_REASONING))
    if not between.strip():
        return None  # nothing tells the reasoning from what follows
    history = render([user], False, True, with_tools)
    prompt_on = render([user], True, True, with_tools)
    prompt_off = render([user], True, False, with_tools)

    # does the generation prompt (thinking on) already open the block?
    shared = marker_start(turn, common_prefix(prompt_on, turn))
    opened = shared <= at_r and not turn[shared:at_r].strip()
    rest = prompt_on[shared:].strip()
    closes = opened and bool(rest) and between.strip().startswith(rest)
    opening = ""
    if not opened:
        start = turn[shared:at_r].strip()  # what the reply writes before its reasoning
    else:
        # the block's own opening: what the reasoning turn writes where the plain turn
        # goes its own way, or what thinking adds to the generation prompt, or (written
        # either way, Qwen3.5's "<think>\n") the last marker before the reasoning
        from_plain = turn[marker_start(turn, common_prefix(plain, turn)) : at_r].strip()
        from_switch = prompt_on[
            marker_start(prompt_on, common_prefix(prompt_on, prompt_off)) :
        ].strip()
        start = _last_marker(turn[:at_r])
        for candidate in (from_plain, from_switch):
            if candidate and _USER not in candidate and turn[:at_r].rstrip().endswith(candidate):
                start = candidate
                break
        if not closes:
            generation = prompt_on[len(history) :] if prompt_on.startswith(history) else ""
            opening = generation.strip() or start
    end, answer_start = _split_closing(between)
    if not end:
        return None
    if at_a < 0:  # a call follows: what opens it is the call format's business
        return ThinkingFormat(start, end, opening, prompt_closes=closes, closing=between)
    after = before_end_of_turn(turn[at_a + len(_ANSWER) :], template)
    return ThinkingFormat(
        start=start,
        end=end,
        prompt_opening=opening,
        answer_start=answer_start,
        answer_end=after.strip(),
        prompt_closes=closes,
        closing=between,
    )


def _before_shared_tail(turn: str, plain: str, pos: int) -> str:
    """What ``turn`` writes from ``pos`` until it ends as ``plain`` does (the call both
    write), a marker cut by that point taken whole; the first marker after ``pos`` when
    ``plain`` writes that part too (an empty block)."""
    cut = len(turn) - common_suffix(turn, plain)
    inside = max(turn.rfind("<", pos, cut), turn.rfind("[", pos, cut))
    if inside >= 0 and not any(c in turn[inside:cut] for c in ">]"):
        closing = min(
            (at for at in (turn.find(">", cut), turn.find("]", cut)) if at >= 0), default=-1
        )
        cut = closing + 1 if closing >= 0 else cut
    if cut > pos and turn[pos:cut].strip():
        return turn[pos:cut]
    marked = [piece for is_marker, piece in segments(turn[pos:]) if is_marker]
    return marked[0] if marked else ""


def _split_closing(between: str) -> tuple[str, str]:
    """(closing marker, answer opening) of the text between reasoning and answer.

    The block closes with the first marker there, taken with a name and a marker right
    after it (Kimi K3's ``<|close|>think<|sep|>``); the rest opens the answer (GPT-OSS's
    ``<|start|>assistant<|channel|>final<|message|>``). ("", "") when the text does
    not start with a marker (a template printing its messages as JSON, say).
    """
    text = between.strip()
    parts = segments(text)
    if not parts or not parts[0][0]:
        return "", ""  # no marker: nothing a reader can look for
    taken = 1
    named = len(parts) >= 3 and not parts[1][0] and parts[2][0]
    if named and not any(c.isspace() for c in parts[1][1]):
        taken = 3
    end = "".join(piece for _, piece in parts[:taken])
    return end, text[len(end) :].strip()


def clear_cache() -> None:
    _formats.clear()
