"""A chat template's text: the ChatTemplate type, the ChatML fallback, the known edits.

Mirrors the template lookup of ``common_chat_templates_init`` in llama.cpp's
``common/chat.cpp``: an empty template or the name "chatml" stands for
``CHATML_TEMPLATE_SRC``, and two known templates get their text edited before parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

# llama.cpp's fallback when a model has no template (CHATML_TEMPLATE_SRC in chat.cpp).
CHATML_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A template and the special tokens it is rendered with.

    ``add_bos``/``add_eos`` mirror the model's tokenizer settings: when the tokenizer
    adds BOS itself, llama.cpp strips a BOS the template wrote so it is not doubled.
    ``tool_use_source`` is the model's tool-use variant
    (``tokenizer.chat_template.tool_use``), which llama.cpp renders with instead when a
    request carries tools; only a GGUF file supplies one.
    """

    source: str
    bos_token: str
    eos_token: str
    add_bos: bool = True
    add_eos: bool = False
    tool_use_source: str | None = None


def named_source(source: str) -> str:
    """llama.cpp reads an empty template, or the name "chatml", as its ChatML template."""
    return CHATML_TEMPLATE if source in ("", "chatml") else source


def patch_source(source: str) -> str:
    """The edits common_chat_templates_init makes to known templates before parsing."""
    source = named_source(source)
    # GPT-OSS refuses its own analysis channel in history
    if "<|channel|>" in source and "in message.content or" in source:
        source = source.replace(
            '{%- if "<|channel|>analysis<|message|>" in message.content or '
            '"<|channel|>final<|message|>" in message.content %}',
            "{%- if false %}",
        )
    # Mistral templates refuse assistant messages with empty content
    if "[TOOL_CALLS]" in source and "if (message['content'] is none or" in source:
        source = source.replace(
            "{%- if (message['content'] is none or message['content'] == '' or "
            "message['content']|length == 0) and (message['tool_calls'] is not defined or "
            "message['tool_calls'] is none or message['tool_calls']|length == 0) %}",
            "{%- if false %}",
        )
    return source
