"""What a chat template can take, found by running it on probe inputs.

llama.cpp decides how to rewrite messages by rendering the template on probe
conversations and watching what it touches (``caps_get`` in llama.cpp's
``common/jinja/caps.cpp``): whether the system message's content is read at all, and
whether content is read as a string or as a list of typed parts, and whether the
template reads tools and tool calls, and a call's arguments as an object. The reasoning
detection (``template/reasoning.py``) completes the picture. Results are cached per
template and special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from ..errors import DeadlineExceeded
from .engine.budget import TemplateLimitError, bounded_render
from .engine.cache import BoundedCache
from .engine.jinja import compile_template
from .engine.probe import Probe, ProbeList, ProbeMessage, ProbeStr, Uses, tracked
from .engine.source import ChatTemplate
from .reasoning import Reasoning


@dataclass(frozen=True)
class Caps:
    """How llama.cpp will treat a template: which rewrites and which reasoning markers."""

    system_role: bool
    only_typed_content: bool
    thinking: bool
    # the reasoning delimiters llama.cpp's autoparser infers ("" when none)
    reasoning_start: str
    reasoning_end: str
    # caps_get's tool probes: the template reads the tools' names, the assistant's
    # tool_calls, and a call's arguments as an object (then llama.cpp parses the
    # arguments' JSON text before rendering: workaround::func_args_not_string)
    supports_tools: bool = True
    supports_tool_calls: bool = True
    object_arguments: bool = False


_STRING_MARKER = "STRING_MARKER"
_caps: BoundedCache[tuple[str, str, str], Caps] = BoundedCache()


def _probe_run(compiled: jinja2.Template, messages: list[Any], **extra: Any) -> str | None:
    """Render for a probe; None when the template fails (failures are findings here).

    Running out of time or work is no finding: DeadlineExceeded and TemplateLimitError
    propagate, so a runaway template costs one probe, not each, and nothing is cached.
    """
    context: dict[str, Any] = {
        "messages": messages,
        "tools": [],
        "bos_token": "",
        "eos_token": "",
        "add_generation_prompt": True,
        **extra,
    }
    try:
        return bounded_render(compiled, context)
    except (DeadlineExceeded, TemplateLimitError):
        raise
    except Exception:
        return None


def capabilities(template: ChatTemplate) -> Caps:
    """The capabilities of ``template`` (cached); a template that does not parse raises."""
    key = (template.source, template.bos_token, template.eos_token)
    cached = _caps.get(key)
    if cached is not None:
        return cached
    source = template.source
    compiled = compile_template(source)

    # typed content: is content read as a list of parts rather than as a string?
    supports_string, supports_typed = True, False
    probe = Probe()
    content = ProbeStr(_STRING_MARKER)
    content.probe = probe
    output = _probe_run(compiled, [{"role": "user", "content": content}])
    used_as_array = bool(probe.ops & {"selectattr", "array_access"})
    supports_typed = used_as_array
    if output is None or (used_as_array and _STRING_MARKER not in output):
        supports_string = False
    if "test_is_string" in probe.ops:
        probe = Probe()
        parts = ProbeList()
        parts.probe = probe
        output = _probe_run(compiled, [{"role": "user", "content": parts}])
        if probe.ops & {"selectattr", "array_access"} and output is not None:
            supports_typed = True

    # system role: does the template read the system message's content at all?
    probe = Probe()
    _probe_run(
        compiled,
        [
            ProbeMessage({"role": "system", "content": "System message"}, probe),
            {"role": "user", "content": "User message"},
        ],
    )
    system_role = probe.used

    tools, tool_calls, object_arguments = _tool_caps(compiled)
    reasoning = Reasoning(compiled, template)
    caps = Caps(
        system_role=system_role,
        only_typed_content=supports_typed and not supports_string,
        thinking=reasoning.supported,
        reasoning_start=reasoning.start,
        reasoning_end=reasoning.end,
        supports_tools=tools,
        supports_tool_calls=tool_calls,
        object_arguments=object_arguments,
    )
    _caps.put(key, caps)
    return caps


# caps_get's probe conversation: a call, its result, an answer, a new question
_PROBE_TOOL = {
    "name": "tool",
    "type": "function",
    "function": {
        "name": "tool1",
        "description": "Tool description",
        "parameters": {
            "type": "object",
            "properties": {"arg": {"type": "string", "description": "Arg description"}},
            "required": ["arg"],
        },
    },
}


def _tool_conversation(arguments: Any) -> list[dict[str, Any]]:
    call = {
        "id": "call00001",
        "type": "function",
        "function": {"name": "tool1", "arguments": arguments},
    }
    return [
        {"role": "user", "content": "User message"},
        # some templates expect empty content beside tool calls
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "Tool response", "tool_call_id": "call00001"},
        {"role": "assistant", "content": "The tool response was 'tool response'"},
        {"role": "user", "content": "User message"},
    ]


def _tool_caps(compiled: jinja2.Template) -> tuple[bool, bool, bool]:
    """(reads tools, reads tool calls, reads arguments as an object), as caps_get finds.

    First with the arguments as an object; only when they were not read as one, again
    with them as JSON text, where a failure means no tool support at all.
    """
    supports_tools = supports_calls = True
    for arguments in ({"arg": "value"}, '{"arg": "value"}'):
        uses = Uses()
        output = _probe_run(
            compiled,
            tracked(_tool_conversation(arguments), uses, "messages"),
            tools=tracked([_PROBE_TOOL], uses, "tools"),
        )
        if output is None:
            if isinstance(arguments, str):
                return False, False, False
            continue  # nothing can be inferred from a failure with object arguments
        if "tools.0.function.name" not in uses.paths:
            supports_tools = False
        if "messages.1.tool_calls" not in uses.paths:
            supports_calls = False
        elif "messages.1.tool_calls.0.function.arguments.arg" in uses.paths:
            return supports_tools, supports_calls, True  # (only an object has .arg)
    return supports_tools, supports_calls, False


def clear_cache() -> None:
    """Forget the capabilities found so far."""
    _caps.clear()
