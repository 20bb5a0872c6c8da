"""What a chat template can take, found by running it on probe inputs.

llama.cpp decides how to rewrite messages by rendering the template on probe
conversations and watching what it touches (``caps_get`` in llama.cpp's
``common/jinja/caps.cpp``): whether the system message's content is read at all, and
whether content is read as a string or as a list of typed parts. The reasoning
detection (``template_reasoning.py``) completes the picture. Results are cached per
template and special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from .errors import DeadlineExceeded
from .template_budget import TemplateLimitError, bounded_render
from .template_cache import BoundedCache
from .template_jinja import compile_template
from .template_probe import Probe, ProbeList, ProbeMessage, ProbeStr
from .template_reasoning import Reasoning
from .template_source import ChatTemplate


@dataclass(frozen=True)
class Caps:
    """How llama.cpp will treat a template: which rewrites and which reasoning markers."""

    system_role: bool
    only_typed_content: bool
    thinking: bool
    # the reasoning delimiters llama.cpp's autoparser infers ("" when none)
    reasoning_start: str
    reasoning_end: str


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

    reasoning = Reasoning(compiled, template)
    caps = Caps(
        system_role=system_role,
        only_typed_content=supports_typed and not supports_string,
        thinking=reasoning.supported,
        reasoning_start=reasoning.start,
        reasoning_end=reasoning.end,
    )
    _caps.put(key, caps)
    return caps


def clear_cache() -> None:
    """Forget the capabilities found so far."""
    _caps.clear()
