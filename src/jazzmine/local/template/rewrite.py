"""The rewrites llama.cpp makes to the messages before, and to the prompt after, rendering.

Mirrors ``common_chat_templates_apply_jinja`` in llama.cpp's ``common/chat.cpp``: the
messages as ``render_message_to_json`` writes them (``tools``), its
``workaround::trim_all_content`` (StepFun), ``workaround::map_developer_role_to_system``,
``workaround::system_message_not_supported``
and ``workaround::func_args_not_string``, and ``messages_inp_normalizer`` (content as
typed parts); and the prefill: a trailing
assistant message is continued rather than answered (``oaicompat_chat_params_parse``
in ``tools/server/server-common.cpp``), after the generation prompt and its reasoning
(``peg_generator::generate_parser`` in ``common/chat-auto-parser-generator.cpp``; the
hand-written formats continue in their own words, ``handlers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LLMInvalidRequestError
from ..types import MessagePart
from .caps import Caps
from .diff import common_prefix, trim_ascii
from .handlers import Continuation
from .tools import arguments_as_objects, message_dict

_STEPFUN_MARKER = "You have access to the following functions in JSONSchema format"
_GPT_OSS_MARKER = "<|channel|>"


@dataclass(frozen=True)
class Prefill:
    """A trailing assistant message the model continues: its text and its reasoning.

    With neither, the message is only dropped: the prompt ends without a generation
    prompt (llama.cpp continues no empty message).
    """

    content: str
    reasoning: str

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning)


def prepare(
    messages: Sequence[MessagePart], source: str, caps: Caps, *, prefill_final: bool = True
) -> tuple[list[dict[str, Any]], Prefill | None]:
    """The messages as the template gets them, and the prefill (None when there is none).

    ``prefill_final=False`` keeps a trailing assistant message as a turn the template
    writes whole (how llama.cpp's template analysis renders one), never a prefill.
    Raises LLMInvalidRequestError, as llama-server does, for two trailing assistant
    messages, a trailing one that calls tools, and call arguments that are not JSON when
    the template reads them as an object.
    """
    msgs: list[dict[str, Any]] = [message_dict(m) for m in messages]
    if _STEPFUN_MARKER in source:
        # workaround::trim_all_content: leftover whitespace sends StepFun into loops
        for msg in msgs:
            msg["content"] = trim_ascii(msg["content"])
            if "reasoning_content" in msg:
                # (written only when it is not empty, as ever)
                msg["reasoning_content"] = trim_ascii(msg["reasoning_content"])
                if not msg["reasoning_content"]:
                    del msg["reasoning_content"]
    if _GPT_OSS_MARKER not in source:
        # workaround::map_developer_role_to_system (GPT-OSS has a developer role)
        for msg in msgs:
            if msg["role"] == "developer":
                msg["role"] = "system"

    # A trailing assistant message is a prefill: llama-server renders the rest and lets
    # the model continue that message (oaicompat_chat_params_parse, prefill_assistant).
    prefill: Prefill | None = None
    if prefill_final and msgs and msgs[-1]["role"] == "assistant":
        if len(msgs) >= 2 and msgs[-2]["role"] == "assistant":
            raise LLMInvalidRequestError(
                "Cannot have 2 or more assistant messages at the end of the list."
            )
        if msgs[-1].get("tool_calls"):
            raise LLMInvalidRequestError(
                "Cannot continue an assistant message that contains tool calls."
            )
        msgs.pop()
        # the message as the caller gave it: llama.cpp's trims (StepFun) spare it
        last = messages[-1]
        prefill = Prefill(last.content or "", last.reasoning_content or "")

    if not caps.system_role:
        _merge_system_message(msgs)
    if caps.object_arguments:
        arguments_as_objects(msgs)
    if caps.only_typed_content:
        # messages_inp_normalizer: the template reads content as a list of parts
        for msg in msgs:
            msg["content"] = [{"type": "text", "text": msg["content"]}]
    return msgs, prefill


def generation_prompt(prompt: str, with_prompt: str) -> str:
    """What rendering with the generation prompt (``with_prompt``) adds to ``prompt``,
    past their common prefix (common_chat_template_generation_prompt_impl)."""
    return with_prompt[common_prefix(prompt, with_prompt) :]


def continuation(generation: str, caps: Caps) -> Continuation:
    """How an analysed template continues a prefill (peg_generator::generate_parser):
    the generation prompt up to its reasoning opening, that opening, the reasoning so
    far, and then, when the message has text, the reasoning's close and the text."""
    if not caps.reasoning_start:
        return Continuation(generation)
    cut = generation.find(caps.reasoning_start)
    opening = generation if cut < 0 else generation[:cut]
    return Continuation(opening, caps.reasoning_start, caps.reasoning_end)


def _merge_system_message(msgs: list[dict[str, Any]]) -> None:
    # workaround::system_message_not_supported: fold the system prompt into the next
    # message, or drop it when it is alone.
    if msgs and msgs[0]["role"] == "system":
        first = msgs.pop(0)
        if msgs:
            msgs[0] = {**msgs[0], "content": f"{first['content']}\n{msgs[0]['content']}"}
