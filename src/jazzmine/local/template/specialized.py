"""What llama.cpp's hand-written formats change in the messages and the prompt.

Most of the handlers ``handlers`` names render the messages as they are; a few reshape
them first, or touch the rendered prompt, and so change what the model sees:

- Ministral 3 / Magistral: a system or assistant message's content becomes a list of
  blocks, its reasoning a ``thinking`` block in front of the text (``ministral3.cpp``);
- GPT-OSS: the reasoning goes in ``thinking``, and a turn with calls loses its content;
  the last ``<|return|>`` of a prompt without a generation prompt reads ``<|end|>``
  (``gpt-oss.cpp``);
- LFM2 and LFM2.5: the reasoning goes in ``thinking`` (``lfm2.cpp``);
- DeepSeek V4: tool results in the order of the calls they answer (``deepseek.cpp``);
- Gemma 4: the templates before the "OpenAI Chat Completions" one read tool results as
  the ``tool_responses`` of the assistant turn that called (``convert_tool_responses_gemma4``);
  every Gemma 4 prompt ending on a closed turn gets the model's turn opened
  (``gemma4.cpp``).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from .handlers import DEEPSEEK_V4, GEMMA_4, GEMMA_4_OLD, GPT_OSS, LFM2, MINISTRAL_3

Messages = list[dict[str, Any]]


def adjust_messages(name: str | None, msgs: Messages) -> Messages:
    """The messages as handler ``name`` hands them to the template."""
    if name == MINISTRAL_3:
        return [_content_blocks(msg) for msg in msgs]
    if name in (GPT_OSS, LFM2):
        return [_thinking_field(msg, drop_content=name == GPT_OSS) for msg in msgs]
    if name == DEEPSEEK_V4:
        return _results_in_call_order(msgs)
    if name == GEMMA_4_OLD:
        return _tool_responses(msgs)
    return msgs


def adjust_prompt(name: str | None, prompt: str, add_generation_prompt: bool) -> str:
    """The rendered prompt as handler ``name`` returns it."""
    if name == GPT_OSS and not add_generation_prompt:
        at = prompt.rfind("<|return|>")
        if at >= 0:
            prompt = prompt[:at] + "<|end|>" + prompt[at + len("<|return|>") :]
    elif name in (GEMMA_4, GEMMA_4_OLD) and add_generation_prompt and prompt.endswith("<turn|>\n"):
        # the template closed the turn (text beside a call): the model's turn still opens
        prompt += "<|turn>model\n"
    return prompt


def _content_blocks(msg: dict[str, Any]) -> dict[str, Any]:
    if msg["role"] not in ("system", "assistant"):
        return msg
    blocks: list[Any] = []
    if isinstance(msg.get("reasoning_content"), str):
        blocks.append({"type": "thinking", "thinking": msg["reasoning_content"]})
    content = msg.get("content")
    if isinstance(content, str):
        blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks.extend(content)
    adjusted = {key: value for key, value in msg.items() if key != "reasoning_content"}
    adjusted["content"] = blocks
    return adjusted


def _thinking_field(msg: dict[str, Any], *, drop_content: bool) -> dict[str, Any]:
    if not isinstance(msg.get("reasoning_content"), str):
        return msg
    adjusted = {**msg, "thinking": msg["reasoning_content"]}
    if drop_content and msg.get("tool_calls"):
        adjusted.pop("content", None)
    return adjusted


def _results_in_call_order(msgs: Messages) -> Messages:
    """Each run of user and tool messages with its tool results sorted into the order
    of the calls of the assistant turn before it (by id; an unknown id sorts first)."""
    result = list(msgs)
    order: dict[str, int] = {}
    i = 0
    while i < len(result):
        role = result[i]["role"]
        if role == "assistant" and result[i].get("tool_calls"):
            calls = result[i]["tool_calls"]
            order = {call["id"]: n for n, call in enumerate(calls) if call.get("id")}
            i += 1
            continue
        if role not in ("user", "tool"):
            i += 1
            continue
        end = i
        while end < len(result) and result[end]["role"] in ("user", "tool"):
            end += 1
        places = [n for n in range(i, end) if result[n]["role"] == "tool"]
        if len(places) > 1 and order:
            ranked = sorted(
                (result[n] for n in places),  # sorted() is stable, as llama.cpp's sort
                key=lambda m: order.get(m.get("tool_call_id") or "", 0),
            )
            for n, msg in zip(places, ranked, strict=True):
                result[n] = msg
        i = end
    return result


def _tool_responses(msgs: Messages) -> Messages:
    """An assistant turn that calls, the tool results after it and a plain answer that
    follows them, as one assistant message carrying ``tool_responses``."""
    result: Messages = []
    i = 0
    while i < len(msgs):
        msg = msgs[i]
        if msg["role"] != "assistant" or not msg.get("tool_calls"):
            result.append(msg)
            i += 1
            continue
        calls = list(msg["tool_calls"])
        merged: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
        i += 1
        responses: list[dict[str, Any]] = []
        while i < len(msgs) and msgs[i]["role"] == "tool":
            responses.append(_tool_response(msgs[i], calls, len(responses)))
            i += 1
        if responses:
            merged["tool_responses"] = responses
        # a plain answer after the results joins the turn; the next call does not
        answer = msgs[i] if i < len(msgs) else {}
        if (
            answer.get("role") == "assistant"
            and answer.get("content")
            and not answer.get("tool_calls")
        ):
            merged["content"] = answer["content"]
            i += 1
        if isinstance(msg.get("reasoning_content"), str):
            merged["reasoning_content"] = msg["reasoning_content"]
        result.append(merged)
    return result


def _tool_response(msg: dict[str, Any], calls: list[Any], index: int) -> dict[str, Any]:
    # the result parsed as JSON when it is JSON, its text otherwise; named after the
    # call at the same position, else after the id it answers
    response = msg.get("content")
    if isinstance(response, str):
        # not JSON (or nested past the decoder): the text itself
        with contextlib.suppress(ValueError, RecursionError):
            response = json.loads(response, parse_constant=_no_constant)
    name = ""
    if index < len(calls):
        name = calls[index].get("function", {}).get("name") or ""
    return {"name": name or msg.get("tool_call_id") or "", "response": response}


def _no_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension to JSON; llama.cpp's parser refuses them
    raise ValueError(f"invalid literal {name}")
