"""The rewrites llama.cpp makes to the messages before, and to the prompt after, rendering.

Mirrors ``common_chat_templates_apply_jinja`` in llama.cpp's ``common/chat.cpp``: the
messages as ``render_message_to_json`` writes them (``tools``), its
``workaround::trim_all_content`` (StepFun), ``workaround::system_message_not_supported``
and ``workaround::func_args_not_string``, and ``messages_inp_normalizer`` (content as
typed parts); and the prefill: a trailing
assistant message is continued rather than answered (``oaicompat_chat_params_parse``
in ``tools/server/server-common.cpp``), with the generation prompt and an empty
reasoning block in front of it (``peg_generator::generate_parser`` in
``common/chat-auto-parser-generator.cpp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import LLMInvalidRequestError
from ..types import MessagePart
from .caps import Caps
from .diff import common_prefix, trim_ascii
from .tools import arguments_as_objects, message_dict

_STEPFUN_MARKER = "You have access to the following functions in JSONSchema format"


def prepare(
    messages: Sequence[MessagePart], source: str, caps: Caps, *, prefill_final: bool = True
) -> tuple[list[dict[str, Any]], str | None]:
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

    # A trailing assistant message is a prefill: llama-server renders the rest and lets
    # the model continue that message (oaicompat_chat_params_parse, prefill_assistant).
    prefill: str | None = None
    if prefill_final and msgs and msgs[-1]["role"] == "assistant":
        if len(msgs) >= 2 and msgs[-2]["role"] == "assistant":
            raise LLMInvalidRequestError(
                "Cannot have 2 or more assistant messages at the end of the list."
            )
        if msgs[-1].get("tool_calls"):
            raise LLMInvalidRequestError(
                "Cannot continue an assistant message that contains tool calls."
            )
        prefill = str(msgs.pop()["content"])

    if not caps.system_role:
        _merge_system_message(msgs)
    if caps.object_arguments:
        arguments_as_objects(msgs)
    if caps.only_typed_content:
        # messages_inp_normalizer: the template reads content as a list of parts
        for msg in msgs:
            msg["content"] = [{"type": "text", "text": msg["content"]}]
    return msgs, prefill


def continuation(prompt: str, with_prompt: str, caps: Caps, prefill: str) -> str:
    """What follows ``prompt`` so that the model continues ``prefill``.

    peg_generator::generate_parser: the generation prompt (what rendering with it,
    ``with_prompt``, adds past the common prefix), an empty reasoning block, then the
    text so far.
    """
    generation = with_prompt[common_prefix(prompt, with_prompt) :]
    if caps.reasoning_start:
        cut = generation.find(caps.reasoning_start)
        if cut >= 0:
            generation = generation[:cut]
        generation += caps.reasoning_start + caps.reasoning_end
    return generation + prefill


def _merge_system_message(msgs: list[dict[str, Any]]) -> None:
    # workaround::system_message_not_supported: fold the system prompt into the next
    # message, or drop it when it is alone.
    if msgs and msgs[0]["role"] == "system":
        first = msgs.pop(0)
        if msgs:
            msgs[0] = {**msgs[0], "content": f"{first['content']}\n{msgs[0]['content']}"}
