"""Which of llama.cpp's hand-written formats renders a template, and how it continues
a prefilled assistant turn.

Before its template analysis, llama.cpp recognises some templates by their source
(``common_chat_try_specialized_template`` in ``common/chat.cpp``, the handlers in
``common/parsers/``), trying the handlers in a fixed order. Each handler continues a
trailing assistant message (a prefill) in its own words, where the analysed templates
get the generic continuation of ``rewrite``: its turn opening, its reasoning opening,
the message's reasoning and, when the message has text, the reasoning's close and the
text. ``specialized`` holds what some of them change in the messages and the prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MINISTRAL_3 = "ministral-3"
GPT_OSS = "gpt-oss"
MUSE_GLIMMER = "muse-glimmer"
FUNCTIONARY_3_2 = "functionary-v3.2"
KIMI_K2 = "kimi-k2"
KIMI_K3 = "kimi-k3"
LING_3 = "ling-3"
COHERE2_MOE = "cohere2-moe"
LFM2 = "lfm2"
GIGACHAT_3 = "gigachat-3"
MINIMAX_M3 = "minimax-m3"
DEEPSEEK_V3_2 = "deepseek-v3.2"
DEEPSEEK_V4 = "deepseek-v4"
GEMMA_4 = "gemma-4"
GEMMA_4_OLD = "gemma-4-old"  # before the "OpenAI Chat Completions" template
MINICPM_5 = "minicpm-5"
QWEN3_CODER = "qwen3-coder"


def _all(*needles: str) -> Callable[[str], bool]:
    return lambda source: all(needle in source for needle in needles)


def _but(test: Callable[[str], bool], *absent: str) -> Callable[[str], bool]:
    return lambda source: test(source) and not any(needle in source for needle in absent)


def _dsml(source: str) -> bool:
    return _all("dsml_token", "DSML")(source) and (
        "function_calls" in source or "tool_calls" in source
    )


# the handlers in the order llama.cpp tries them, each with the source test picking it
_HANDLERS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (MINISTRAL_3, _but(_all("[SYSTEM_PROMPT]", "[TOOL_CALLS]", "[ARGS]"), "[CALL_ID]")),
    (GPT_OSS, _all("<|channel|>")),
    (MUSE_GLIMMER, _all("<atem:function_calls>", "<|eom|>")),
    (FUNCTIONARY_3_2, _all(">>>all", ">>>${recipient}")),
    (KIMI_K2, _all("<|tool_calls_section_begin|>", "<|tool_call_begin|>")),
    (KIMI_K3, _all("<|open|>", "<|close|>", "<|end_of_msg|>")),
    (LING_3, _all("<role>ASSISTANT</role>", "<arg_key>")),
    (COHERE2_MOE, _all("<|START_TEXT|>", "<|START_ACTION|>")),
    (LFM2, _all("<|tool_list_start|>", "<|tool_list_end|>")),
    (LFM2, _but(_all("List of tools: ["), "<|tool_list_start|>")),  # LFM2.5
    (GIGACHAT_3, _but(_all("<|role_sep|>", "<|message_sep|>"), "<|function_call|>")),
    (MINIMAX_M3, _all("]<]minimax[>[", "<tool_call>", "<invoke name=")),
    (DEEPSEEK_V3_2, _dsml),  # V4 names its block tool_calls, not function_calls
    (GEMMA_4, _all("'<|tool_call>call:'")),
    (MINICPM_5, _all("Tool usage guidelines:", '<function name="', '<param name="')),
    (
        QWEN3_CODER,
        _but(
            _all("<tool_call>", "<function=", "<parameter="),
            "'<tool_call><function=' ~ tool_call.name ~ '>'",
        ),
    ),
)


def handler(source: str) -> str | None:
    """The hand-written handler llama.cpp renders ``source`` with; None for a template
    it analyses instead."""
    for name, picks in _HANDLERS:
        if picks(source):
            if name == DEEPSEEK_V3_2 and "function_calls" not in source:
                return DEEPSEEK_V4
            if name == GEMMA_4 and "{#- OpenAI Chat Completions:" not in source:
                return GEMMA_4_OLD
            return name
    return None


@dataclass(frozen=True)
class Continuation:
    """How a prefilled assistant turn is continued: ``opening``, then (when ``think`` is
    not None) ``think`` and the message's reasoning, then, when the message has text,
    ``close`` (after reasoning) and the text."""

    opening: str
    think: str | None = None
    close: str = ""

    def text(self, reasoning: str, content: str) -> str:
        """What follows the rendered prompt; ``content`` empty means the message only
        reasons, and the model goes on reasoning."""
        text = self.opening
        if self.think is not None:
            text += self.think + reasoning
            if content:
                text += self.close
        return text + content


_THINK = ("<think>", "</think>")

# each handler's continuation, where it does not depend on the rendering
_CONTINUATIONS: dict[str, Continuation] = {
    COHERE2_MOE: Continuation(
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        "<|START_THINKING|>",
        "<|END_THINKING|><|START_TEXT|>",
    ),
    DEEPSEEK_V3_2: Continuation("<｜Assistant｜>", *_THINK),
    FUNCTIONARY_3_2: Continuation("<|start_header_id|>assistant<|end_header_id|>\n\n>>>all\n"),
    GIGACHAT_3: Continuation("assistant<|role_sep|>\n"),
    GPT_OSS: Continuation(
        "<|start|>assistant<|channel|>analysis<|message|>",
        "",
        "<|end|><|start|>assistant<|channel|>final<|message|>",
    ),
    KIMI_K2: Continuation("<|im_assistant|>assistant<|im_middle|>", *_THINK),
    KIMI_K3: Continuation(
        '<|open|>message role="assistant"<|sep|>',
        "<|open|>think<|sep|>",
        "<|close|>think<|sep|><|open|>response<|sep|>",
    ),
    LFM2: Continuation("<|im_start|>assistant\n", *_THINK),
    LING_3: Continuation("<role>ASSISTANT</role>\n", *_THINK),
    MINICPM_5: Continuation("<|im_start|>assistant\n", "<think>\n", "\n</think>\n\n"),
    MINISTRAL_3: Continuation("", "[THINK]", "[/THINK]"),
    MUSE_GLIMMER: Continuation(
        "<|start|>assistant to=self<|message|>",
        "",
        "<|eom|><|start|>assistant to=user<|message|>",
    ),
}


def handler_continuation(
    name: str | None, source: str, prompt: str, generation: str, reasoning: str
) -> Continuation | None:
    """How handler ``name`` continues a prefill after ``prompt`` (``generation``: the
    generation prompt the template renders); None for an analysed template."""
    if name is None:
        return None
    if name in _CONTINUATIONS:
        return _CONTINUATIONS[name]
    if name == DEEPSEEK_V4:
        # without reasoning, V4 closes the thinking its generation prompt would open
        if reasoning:
            return _CONTINUATIONS[DEEPSEEK_V3_2]
        return Continuation("<｜Assistant｜>", "", "</think>")
    if name in (GEMMA_4, GEMMA_4_OLD):
        opening = "<|turn>model\n" if prompt.endswith("<turn|>\n") else ""
        return Continuation(opening, "<|channel>thought\n", "<channel|>")
    if name == MINIMAX_M3:
        return Continuation(generation, "<mm:think>", "</mm:think>")
    # Qwen3-Coder, and the templates that share its calls (Nemotron 3, Qwen3.5, ...)
    if "<think>" in source:
        return Continuation("<|im_start|>assistant\n", "<think>\n", "\n</think>\n\n")
    return Continuation("<|im_start|>assistant\n")
