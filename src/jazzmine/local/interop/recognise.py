"""Which framework part a call serves, told by the framework's own prompt constants.

A part is recognised when the call's first message is the system prompt the part sends,
read from the framework module the part lives in, and that constant is one this package
knows (its fingerprint is listed here for each framework release whose prompts were checked
against a shape). The framework's modules are looked up in ``sys.modules`` only: a part
that runs has imported its module, and nothing is imported here. Another release's prompts
fingerprint differently and are left unconstrained.
"""

from __future__ import annotations

import functools
import hashlib
import string
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import shapes
from .shapes import Shape

#: Framework releases whose prompts are recognised (their fingerprints are below).
RECOGNISED_VERSIONS = ("0.1.42",)

# (module, constant) -> sha256 prefixes of the texts known to go with each shape.
_FINGERPRINTS: dict[tuple[str, str], frozenset[str]] = {
    ("jazzmine.core.message_enhancer", "ENHANCEMENT_SYSTEM_PROMPT"): frozenset(
        {"a56f5ee01afb6af3"}
    ),
    ("jazzmine.core.conversation_summarizer", "SUMMARIZER_SYSTEM_PROMPT"): frozenset(
        {"a09760304f152c14"}
    ),
    ("jazzmine.core.flows.selector", "SELECTOR_SYSTEM_PROMPT"): frozenset({"eecf3cf5fb6c7128"}),
    ("jazzmine.core.agent.prompts", "_SLOT_EXTRACTION_SYSTEM"): frozenset({"64a60672df871f6a"}),
    ("jazzmine.core.agent.prompts", "_TITLE_GENERATION_SYSTEM"): frozenset({"01cc4e1443889a90"}),
    ("jazzmine.core.agent.prompts", "_SYSTEM_PROMPT_TEMPLATE"): frozenset({"debd0dee6569bfc2"}),
    ("jazzmine.core.agent.prompts", "_SYSTEM_PROMPT_NO_TOOLS_TEMPLATE"): frozenset(
        {"35103a3a59606716"}
    ),
}


@functools.lru_cache(maxsize=32)
def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def known_constant(module: str, name: str) -> str | None:
    """The framework's constant ``name`` from ``module`` if that module is imported and the
    text is one this package knows; else None."""
    found = sys.modules.get(module)
    text = getattr(found, name, None) if found is not None else None
    if not isinstance(text, str) or _fingerprint(text) not in _FINGERPRINTS[(module, name)]:
        return None
    return text


@functools.lru_cache(maxsize=8)
def _template_ends(template: str) -> tuple[str, str] | None:
    """The text before ``{name}`` and after ``{personality}`` of the agent's system prompt
    template, the only fields it has (else None: not a template this reads)."""
    fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    if fields != ["name", "personality"]:
        return None
    head = template.split("{name}", 1)[0]
    tail = template.split("{personality}", 1)[1]
    return head, tail


def _is_agent_prompt(system: str, template: str) -> bool:
    ends = _template_ends(template)
    return ends is not None and system.startswith(ends[0]) and system.endswith(ends[1])


def _content(message: Any) -> str:
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else ""


def _json(part: str, schema: dict[str, Any], tokens: int) -> Shape:
    return Shape(part, json_schema=schema, min_tokens=tokens)


def _agent_loop(messages: Sequence[Any], with_tools: bool, flat: bool) -> Shape:
    turn = _content(messages[1]) if len(messages) > 1 else ""
    last = _content(messages[-1])
    # A task is offered on the turn's first call and after a tool's result; the loop's other
    # messages (a repair, the last call) ask for the answer only.
    tasks = with_tools and (len(messages) <= 2 or last.lstrip().startswith("<tool_execution"))
    grammar = shapes.agent_reply(
        sandboxes=shapes.sandbox_names(turn),
        confirmation="<pending_confirmation" in turn,
        active_flow=' flow="' in turn.split("\n", 1)[0],
        tasks=tasks,
        single_line=flat,
    )
    return Shape("agent_loop", grammar=grammar, min_tokens=360, flat_prompt=True)


def _prompts() -> list[tuple[tuple[str, str], Callable[[Sequence[Any]], Shape | None]]]:
    """Each recognised constant and what a call that opens with it is held to."""

    def selector(messages: Sequence[Any]) -> Shape | None:
        ids = shapes.candidate_ids(_content(messages[-1]))
        return (
            _json("flow_selector", shapes.flow_ids(ids), 64 + sum(len(i) + 30 for i in ids))
            if ids
            else None
        )

    def slots(messages: Sequence[Any]) -> Shape | None:
        asked = shapes.pending_slots(_content(messages[-1]))
        return (
            _json("slot_extraction", shapes.slot_values(asked), 64 + 180 * len(asked))
            if asked
            else None
        )

    return [
        (
            ("jazzmine.core.message_enhancer", "ENHANCEMENT_SYSTEM_PROMPT"),
            lambda _: _json("message_enhancer", shapes.ENHANCER, 1200),
        ),
        (
            ("jazzmine.core.conversation_summarizer", "SUMMARIZER_SYSTEM_PROMPT"),
            lambda _: _json("conversation_summarizer", shapes.SUMMARY, 900),
        ),
        (("jazzmine.core.flows.selector", "SELECTOR_SYSTEM_PROMPT"), selector),
        (("jazzmine.core.agent.prompts", "_SLOT_EXTRACTION_SYSTEM"), slots),
        (
            ("jazzmine.core.agent.prompts", "_TITLE_GENERATION_SYSTEM"),
            lambda _: Shape("conversation_title", grammar=shapes.TITLE, min_tokens=100),
        ),
    ]


def shape_for(messages: Sequence[Any], *, flat: bool = False) -> Shape | None:
    """The shape of the framework part these messages come from, or None (not a part, or
    not a release this package knows, or the framework not in use at all). ``flat``: the
    agent loop may be rendered flat (``Shape.flat_prompt``), and its shape is then the one
    for that rendering."""
    if "jazzmine.core" not in sys.modules or not messages:
        return None
    first = messages[0]
    if getattr(first, "role", None) != "system":
        return None
    system = _content(first)
    for (module, name), shape in _prompts():
        if known_constant(module, name) == system:
            return shape(messages)
    for name, with_tools in (
        ("_SYSTEM_PROMPT_TEMPLATE", True),
        ("_SYSTEM_PROMPT_NO_TOOLS_TEMPLATE", False),
    ):
        template = known_constant("jazzmine.core.agent.prompts", name)
        if template is not None and _is_agent_prompt(system, template):
            return _agent_loop(messages, with_tools, flat)
    return None
