"""What ``jazzmine models`` shows of a GGUF, read from its header (no weights): the
architecture, trained context, chat-template family and whether the template knows
tools or thinking."""

from __future__ import annotations

import contextlib
from typing import Any

from ..gguf import reader as gguf


def describe(path: str) -> dict[str, Any]:
    info: dict[str, Any] = {"architecture": None, "context": None, "template": None}
    info.update(tools=None, thinking=None)
    try:
        arch = gguf.read_metadata(path, ["general.architecture"]).get("general.architecture")
        if not isinstance(arch, str):
            return info
        keys = [f"{arch}.context_length", "tokenizer.chat_template"]
        meta = gguf.read_metadata(path, keys)
    except (OSError, gguf.GGUFError):
        return info
    context = meta.get(keys[0])
    info.update(architecture=arch, context=context if isinstance(context, int) else None)
    source = meta.get("tokenizer.chat_template")
    if not isinstance(source, str) or not source:
        info["template"] = "none"
        return info
    # The template engine loads only here: listing names alone stays cheap.
    from ..template.caps import capabilities
    from ..template.engine.source import ChatTemplate, patch_source
    from ..tools.families import detect_family

    info["template"] = detect_family(source).name
    with contextlib.suppress(Exception):  # a template that does not parse: unknown
        template = ChatTemplate(patch_source(source), "", "")
        caps = capabilities(template)
        info.update(tools=caps.supports_tools, thinking=caps.thinking)
        if info["template"] == "generic" and caps.supports_tool_calls:
            from ..tools.formats.derive import derive_format

            # the call format learnt from the template itself (docs/tools.md)
            if derive_format(template) is not None:
                info["template"] = "derived"
    return info
