"""Tools and tool history the way llama.cpp hands them to a chat template.

Mirrors llama.cpp's ``common/chat.cpp``: the tools as ``common_chat_tools_parse_oaicompat``
reads them and ``common_chat_tools_to_json_oaicompat`` rebuilds them; a message as
``common_chat_msgs_parse_oaicompat`` reads it and ``common_chat_msg::to_json_oaicompat``
writes it back (content always a string, the tool fields only when set, arguments as
JSON text); ``workaround::func_args_not_string`` (arguments parsed into an object for
the templates that read them as one); and the tool-use variant of a model's template
(``common_chat_templates_init``, ``common_chat_templates_apply_jinja``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import LLMInvalidRequestError
from ..types import MessagePart
from .engine.source import ChatTemplate


def template_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tools as the template sees them: each rebuilt with llama.cpp's keys and order.

    Templates print tools with ``tojson``, so the key order (type, function; name,
    description, parameters) and the empty description of a tool without one are part
    of the prompt.
    """
    result: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise LLMInvalidRequestError(f"unsupported tool (type must be 'function'): {tool!r}")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise LLMInvalidRequestError(f"tool without a function name: {tool!r}")
        description = function.get("description", "")
        result.append(
            {
                "type": "function",
                "function": {
                    "name": function["name"],
                    "description": "" if description is None else description,
                    "parameters": function.get("parameters", {}),
                },
            }
        )
    return result


def message_dict(message: MessagePart) -> dict[str, Any]:
    """One message as the template sees it (``to_json_oaicompat``).

    Content is "" rather than None for an assistant turn that only calls tools;
    ``reasoning_content``, ``name``, ``tool_call_id`` and ``tool_calls`` appear only when
    set, in that order.
    """
    msg: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.reasoning_content:
        msg["reasoning_content"] = message.reasoning_content
    if message.name:
        msg["name"] = message.name
    if message.tool_call_id:
        msg["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        msg["tool_calls"] = [_call_dict(call) for call in message.tool_calls]
    return msg


def _call_dict(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise LLMInvalidRequestError(f"tool call without a function name: {call!r}")
    if "arguments" not in function:
        raise LLMInvalidRequestError(f"tool call without arguments: {call!r}")
    arguments = function["arguments"]
    if not isinstance(arguments, str):
        # llama.cpp keeps arguments as text: an object given is written compactly
        arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    result: dict[str, Any] = {
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }
    if call.get("id"):
        result["id"] = call["id"]
    return result


def arguments_as_objects(msgs: list[dict[str, Any]]) -> None:
    """workaround::func_args_not_string: each call's arguments parsed from their text.

    For templates that read ``arguments`` as an object (Qwen 2.5's ``arguments | tojson``
    would otherwise print a quoted string). Text that is not JSON fails the request, as
    it does in llama.cpp.
    """
    for msg in msgs:
        calls = msg.get("tool_calls")
        if not calls:
            continue
        parsed = []
        for call in calls:
            function = call["function"]
            arguments = function["arguments"]
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments, parse_constant=_no_constant)
                except (ValueError, RecursionError) as exc:
                    raise LLMInvalidRequestError(
                        "Failed to parse tool call arguments as JSON: "
                        f"{exc} (in the call of {function['name']!r}: {arguments[:200]!r})"
                    ) from exc
            parsed.append({**call, "function": {**function, "arguments": arguments}})
        msg["tool_calls"] = parsed


def _no_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension to JSON; llama.cpp's parser refuses them
    raise ValueError(f"invalid literal {name}")


def tool_template(template: ChatTemplate) -> ChatTemplate:
    """The template llama.cpp renders with when tools are given.

    The model's ``tokenizer.chat_template.tool_use`` when it has one, the template
    itself otherwise.
    """
    if template.tool_use_source is None:
        return template
    return ChatTemplate(
        template.tool_use_source,
        template.bos_token,
        template.eos_token,
        template.add_bos,
        template.add_eos,
    )
