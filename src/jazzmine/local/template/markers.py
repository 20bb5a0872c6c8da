"""Where an assistant turn ends in a rendered chat template, so generation stops there,
and where a finished turn begins after the generation prompt.

llama.cpp stops at the model's end-of-generation tokens; when the prompt is given as
text instead, the stop strings are the turn-end markers of the template family. The
table is ours (no single llama.cpp file lists them): the markers of the template
families llama.cpp ships in ``models/templates``.
"""

from __future__ import annotations

from .diff import common_prefix
from .engine.source import ChatTemplate

# Strings that close an assistant turn in the template families llama.cpp ships.
_TURN_END_MARKERS = (
    "<end_of_turn>",  # Gemma 1-3
    "<turn|>",  # Gemma 4
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3 tool calls
    "<|im_end|>",  # ChatML, Qwen
    "<|end|>",  # Phi 3, GPT-OSS
    "<|return|>",  # GPT-OSS
    "<|call|>",  # GPT-OSS, a turn that calls
    "<|end_of_text|>",  # Granite
    "<|endoftext|>",
    "<|END_OF_TURN_TOKEN|>",  # Command R
    "<｜end▁of▁sentence｜>",  # DeepSeek
    "<|eot|>",
    "<end_of_utterance>",
    "</s>",  # Llama 2, Mistral
    "<seed:eos>",  # Seed-OSS
    "[e~[",  # MiniMax M2, M3
    "<|end_of_msg|>",  # Kimi K3
    "<|role_end|>",  # Ling
    "</assistant>",  # Laguna
    "<sep>",  # Reka
)


def turn_after_prompt(prompt: str, full: str, template: ChatTemplate) -> str | None:
    """What a finished assistant turn adds after the generation prompt, up to its end.

    ``prompt`` is the conversation rendered with the generation prompt, ``full`` the same
    with the turn rendered whole (``render(..., prefill_final=False)``): what a model
    trained on the template writes after ``prompt``. None when the two share no
    generation prompt.
    """
    if full.startswith(prompt):
        return before_end_of_turn(full[len(prompt) :], template)
    # the generation prompt opens what the turn writes closed ("<think>"): the turn
    # starts at the first difference, moved back to a tag it falls inside
    shared = common_prefix(prompt, full)
    opening = full.rfind("<", 0, shared + 1)
    if opening >= 0 and ">" not in full[opening:shared]:
        shared = opening
    if shared < len(prompt.rstrip()) - 40:
        return None
    return before_end_of_turn(full[shared:], template)


def before_end_of_turn(text: str, template: ChatTemplate) -> str:
    """``text`` up to the first of the template's end-of-turn markers."""
    cut = len(text)
    for marker in end_of_turn_markers(template):
        at = text.find(marker)
        if 0 <= at < cut:
            cut = at
    return text[:cut]


def end_of_turn_markers(template: ChatTemplate) -> tuple[str, ...]:
    """Strings after which the model has finished its turn, so generation stops there.

    The known markers that the template writes, plus the EOS token.
    """
    source = template.source
    markers = [m for m in _TURN_END_MARKERS if m in source]
    if "<|return|>" in source and "<|call|>" in source and "<|end|>" in markers:
        # harmony (GPT-OSS): "<|end|>" ends a message within the turn (the analysis
        # before the answer), "<|return|>" and "<|call|>" the turn; llama.cpp takes
        # "<|end|>" off the end-of-generation list for such a vocabulary too
        markers.remove("<|end|>")
    if template.eos_token and template.eos_token not in markers:
        markers.append(template.eos_token)
    return tuple(markers)
