"""Whether llama.cpp treats a chat template as reasoning, and its reasoning delimiters.

llama-server passes ``enable_thinking=true`` only to templates it believes reason, and
a prefilled reply gets an empty reasoning block first. Which templates reason is
decided by rendering probe conversations and diffing the outputs around "markers"
(``<...>`` and ``[...]`` spans); the parts of that analysis that concern plain text
are ported here, with the same probe strings. Mirrors ``analyze_reasoning`` in
llama.cpp's ``common/chat-diff-analyzer.cpp``, and the families with their own handler
listed by ``common_chat_try_specialized_template`` in ``common/chat.cpp``.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2

from ..errors import DeadlineExceeded
from .diff import diff_split, segments, trim_ascii
from .engine.budget import TemplateLimitError, bounded_render
from .engine.source import ChatTemplate

_USER_MSG = "U_USER_MSG Hello END_U"
_ASSISTANT_MSG = "A_ASST_MSG I can help END_A"
_THINKING_CONTENT = "REASON_PART I am thinking END_R"
_SPACE = "[ \\t\\n\\v\\f\\r]*"
_MARKER = r"(?:<[^>]*>|\[[^\]]*\])"
_WRAPPED = re.compile(
    f"({_MARKER}{_SPACE}){re.escape(_THINKING_CONTENT)}({_SPACE}{_MARKER}{_SPACE})"
)
_DELIMITED = re.compile(f"{re.escape(_THINKING_CONTENT)}{_SPACE}({_MARKER}{_SPACE})?")


def specialized_thinking(src: str) -> bool | None:
    """common_chat_try_specialized_template: families with their own handler decide."""

    def has(*needles: str) -> bool:
        return all(n in src for n in needles)

    if has("[SYSTEM_PROMPT]", "[TOOL_CALLS]", "[ARGS]") and "[CALL_ID]" not in src:
        return True  # Ministral 3
    if has("<|channel|>"):
        return True  # GPT-OSS
    if has("<atem:function_calls>", "<|eom|>"):
        return True  # Muse Glimmer
    if has(">>>all", ">>>${recipient}"):
        return False  # Functionary v3.2
    if has("<|tool_calls_section_begin|>", "<|tool_call_begin|>"):
        return True  # Kimi K2
    if has("<|open|>", "<|close|>", "<|end_of_msg|>"):
        return True  # Kimi K3
    if has("<role>ASSISTANT</role>", "<arg_key>"):
        return True  # Ling 3
    if has("<|START_TEXT|>", "<|START_ACTION|>"):
        return True  # Cohere2 MoE
    if has("<|tool_list_start|>", "<|tool_list_end|>"):
        return True  # LFM2
    if has("List of tools: [") and "<|tool_list_start|>" not in src:
        return True  # LFM2.5
    if has("<|role_sep|>", "<|message_sep|>") and "<|function_call|>" not in src:
        return False  # GigaChat 3
    if has("]<]minimax[>[", "<tool_call>", "<invoke name="):
        return True  # MiniMax M3
    if has("dsml_token", "DSML") and ("function_calls" in src or "tool_calls" in src):
        return True  # DeepSeek V3.2 / V4
    if has("'<|tool_call>call:'"):
        return True  # Gemma 4
    if has("Tool usage guidelines:", '<function name="', '<param name="'):
        return True  # MiniCPM 5
    if (
        has("<tool_call>", "<function=", "<parameter=")
        and "'<tool_call><function=' ~ tool_call.name ~ '>'" not in src
    ):
        return "<think>" in src  # Qwen3-Coder family
    return None


class Reasoning:
    """Whether llama.cpp treats the template as reasoning, and its delimiters."""

    def __init__(self, compiled: jinja2.Template, template: ChatTemplate) -> None:
        self.compiled = compiled
        self.template = template
        source = template.source
        self.start = self.end = ""
        found = False
        special = specialized_thinking(source)
        if special is None:
            found = self._presence()
            found = self._thinking_flag() or found
            if (
                not found
                and "content.split('</think>')" in source
                and "reasoning_content" not in source
                and "<SPECIAL_12>" not in source
            ):
                found, self.start, self.end = True, "<think>", "</think>"  # old Qwen
            if (
                "Write your thoughts between <think></think> and write your response "
                "between <response></response>" in source
            ):
                found, self.start, self.end = True, "<think>", "</think>"  # Granite 3.3
            if all(
                t in source
                for t in ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>", "<TOOL_RESPONSE>")
            ):
                found, self.start, self.end = True, "<think>\n", "</think>"  # Nemotron v2
            if "laguna_glm_thinking" in source:
                self.start, self.end = trim_ascii(self.start), trim_ascii(self.end)
        self.supported = found if special is None else special

    def _run(self, messages: list[dict[str, Any]], generation_prompt: bool, thinking: bool) -> str:
        # autoparser::apply_template: real special tokens, no BOS strip, no date
        context: dict[str, Any] = {
            "messages": messages,
            "bos_token": self.template.bos_token,
            "eos_token": self.template.eos_token,
            "enable_thinking": thinking,
        }
        if generation_prompt:
            context["add_generation_prompt"] = True
        try:
            return bounded_render(self.compiled, context)
        except (DeadlineExceeded, TemplateLimitError):
            raise  # out of time or work is no finding; no verdict may be cached
        except Exception:
            return ""

    def _presence(self) -> bool:
        """compare_reasoning_presence: is reasoning_content shown, and delimited?"""
        user = {"role": "user", "content": _USER_MSG}
        plain = {"role": "assistant", "content": _ASSISTANT_MSG}
        with_reasoning = {**plain, "reasoning_content": _THINKING_CONTENT}
        output_a = self._run([user, plain], False, True)
        output_b = self._run([user, with_reasoning], False, True)
        if not output_a or not output_b:
            return False
        if _THINKING_CONTENT not in diff_split(output_a, output_b)[1]:
            return False
        wrapped = _WRAPPED.search(output_b)
        if wrapped:
            self.start, self.end = wrapped.group(1), wrapped.group(2)
            return True
        delimited = _DELIMITED.search(output_b)
        if delimited and delimited.group(1):
            self.end = delimited.group(1)
            return True
        return False

    def _thinking_flag(self) -> bool:
        """compare_thinking_enabled: what does enable_thinking change in the prompt?"""
        user = [{"role": "user", "content": _USER_MSG}]
        output_a = self._run(user, True, False)
        output_b = self._run(user, True, True)
        if not output_a or not output_b:
            return False
        left, right = diff_split(output_a, output_b)
        left_trimmed, right_trimmed = trim_ascii(left), trim_ascii(right)
        found = False
        if not left_trimmed and right:
            if right_trimmed and output_b.endswith(right_trimmed) and not self.start:
                self.start, found = right, True
        elif not right_trimmed and left:
            if left_trimmed and output_a.endswith(left_trimmed) and not self.end:
                segs = [seg for seg in segments(output_a) if trim_ascii(seg[1])]
                if len(segs) >= 2 and segs[-1][1] == left_trimmed and segs[-2][0]:
                    self.start = segs[-2][1]
                self.end, found = left, True
        elif left_trimmed and right_trimmed:
            # tail anchoring: one output's ending reappears in the other, followed by
            # exactly two markers (the opening and closing reasoning tags)
            for base, extended in ((output_b, output_a), (output_a, output_b)):
                anchor = base[-64:]
                pos = extended.rfind(anchor)
                if pos < 0 or pos + len(anchor) >= len(extended):
                    continue
                extra = trim_ascii(extended[pos + len(anchor) :])
                if not extra:
                    continue
                segs = [seg for seg in segments(extra) if trim_ascii(seg[1])]
                if len(segs) == 2 and segs[0][0] and segs[1][0]:
                    self.start = self.start or segs[0][1]
                    self.end = self.end or segs[1][1]
                    found = True
                    break
        return found or (not self.start and bool(self.end))
