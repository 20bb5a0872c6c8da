"""Tool calls that always parse: the pure part of ``LocalLLM(tools=..., tool_choice=...)``.

A request with tools goes through four steps, each a pure function of its inputs:

1. ``check_tools`` / ``check_tool_choice``: the OpenAI shapes, checked once;
2. ``plan_tools``: the template's family (``families``) decides how the tools
   reach the prompt: native families get them in the template's ``tools`` variable
   (``ToolPlan.template_tools``), the generic family gets a system message text
   (``ToolPlan.messages``);
3. ``ToolPlan.grammar``: a GBNF grammar that makes the reply a well-formed call whose
   arguments fit the schema (forced for "required" or a named function; for "auto",
   lazy on llama-server, or an equivalent eager grammar per call);
4. ``ToolPlan.parse`` or ``ToolPlan.splitter``: the text and the checked calls, whole
   or streamed; a call that cannot be used raises ``LLMToolCallError``.

The modules behind it: ``spec`` (shapes, ids, the error), ``schema`` (JSON
Schema to GBNF, validation), ``families``, ``formats`` (a template's own format,
learnt by rendering it), ``grammar``, ``parse``;
``reasoning`` separates ``<think>`` blocks. The design is in ``docs/tools.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LLMToolCallError, OptionValueError
from ..template.engine.source import ChatTemplate
from ..types import MessagePart
from .families import FAMILIES, GENERIC, Family, derived_family, detect_family
from .formats.shape import CallFormat, example_call
from .gbnf import Grammar
from .grammar import ToolGrammar, avoid, build_grammar
from .parse import ParsedReply, parse_reply
from .reasoning import Think
from .schema import check_schema
from .spec import Choice, Tool, ToolCall, call_id, check_tool_choice, check_tools
from .stream import ToolStreamSplitter
from .validate import validate

__all__ = [
    "FAMILIES",
    "Choice",
    "Family",
    "Grammar",
    "LLMToolCallError",
    "ParsedReply",
    "Think",
    "Tool",
    "ToolCall",
    "ToolGrammar",
    "ToolPlan",
    "ToolStreamSplitter",
    "avoid",
    "call_id",
    "check_schema",
    "check_tool_choice",
    "check_tools",
    "detect_family",
    "finish_reason_for",
    "generic_instructions",
    "parse_reply",
    "plan_tools",
    "validate",
]


def _listed(tools: Sequence[Tool], choice: Choice) -> str:
    """The tools a request may call, one JSON line each."""
    return "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": t.schema},
            ensure_ascii=False,
        )
        for t in tools
        if choice.mode != "named" or t.name == choice.name
    )


def generic_instructions(tools: Sequence[Tool], choice: Choice, parallel: bool = True) -> str:
    """The system message text that teaches a model without native tool support the
    tools and the JSON envelope (see docs/tools.md); the grammar enforces the envelope,
    this text tells the model what it means."""
    listed = _listed(tools, choice)
    several = " One or more calls may be listed." if parallel and choice.mode != "named" else ""
    call = '{"tool_calls": [{"name": <function name>, "arguments": <arguments object>}]}'
    if choice.forces_call:
        how = f"Reply with a JSON object that calls a function:\n{call}{several}"
    else:
        how = (
            "Reply with exactly one JSON object. To call functions:\n"
            f"{call}{several}\n"
            'To answer without calling a function:\n{"content": <your answer as a string>}'
        )
    return f"You can call these functions (their parameters are JSON Schema):\n{listed}\n\n{how}"


def format_instructions(fmt: CallFormat, tools: Sequence[Tool], choice: Choice) -> str:
    """The system message text for a template that writes calls in its own format but
    prints no tool list: the tools, and how a call is written (an example)."""
    listed = _listed(tools, choice)
    chosen = next(t for t in tools if choice.mode != "named" or t.name == choice.name)
    how = "Call a function" if choice.forces_call else "To call a function, reply"
    return (
        f"You can call these functions (their parameters are JSON Schema):\n{listed}\n\n"
        f"{how} like this:\n{example_call(fmt, chosen.name, chosen.schema)}"
    )


@dataclass(frozen=True)
class ToolPlan:
    """How one request with tools is prompted, constrained and read back."""

    family: Family
    tools: tuple[Tool, ...]
    choice: Choice
    parallel: bool = True
    think: Think | None = None
    # the template prints a tool list (template/caps.py): it gets the tools even when
    # its call format could not be learnt and the generic envelope reads the reply
    template_reads_tools: bool = False

    @property
    def template_tools(self) -> list[dict[str, Any]] | None:
        """The template's ``tools`` variable: None means leave it undefined (llama.cpp
        sets it only for a non-empty tool list, and templates that print no tools
        never get it)."""
        if not (self.family.native or self.template_reads_tools) or not self.tools:
            return None
        return [tool.as_template_tool() for tool in self.tools]

    @property
    def system_text(self) -> str | None:
        """The text to add to the system message: for the generic family, the tools
        and the envelope; for a learnt format whose template writes calls but prints
        no tools, the tools and an example call in that format."""
        if not self.tools or self.choice.mode == "none":
            return None
        fmt = self.family.format
        if fmt is not None and not self.template_reads_tools:
            return format_instructions(fmt, self.tools, self.choice)
        if self.family.native:
            return None
        return generic_instructions(self.tools, self.choice, self.parallel)

    def messages(self, messages: Sequence[MessagePart]) -> list[MessagePart]:
        """``messages`` with the generic tool text in the system message: appended to a
        leading system message, or as a new first one. Native families: unchanged."""
        result = list(messages)
        text = self.system_text
        if text is None:
            return result
        if result and result[0].role == "system":
            first = result[0]
            joined = f"{first.content}\n\n{text}" if first.content else text
            result[0] = MessagePart(role="system", content=joined)
        else:
            result.insert(0, MessagePart(role="system", content=text))
        return result

    def grammar(self, *, lazy: bool = False, deadline: float | None = None) -> ToolGrammar | None:
        """The grammar for the reply. ``lazy=True`` (llama-server only) gives, for
        "auto", the calls' grammar with its triggers; otherwise one eager grammar. Built
        within ``deadline`` (``DeadlineExceeded``)."""
        return build_grammar(
            self.family,
            self.tools,
            self.choice,
            parallel=self.parallel,
            lazy=lazy,
            think=self.think,
            deadline=deadline,
        )

    def parse(self, text: str, *, complete: bool = True) -> ParsedReply:
        """The reply's text and checked calls (raises LLMToolCallError)."""
        return parse_reply(text, self.family, self.tools, self.choice, complete=complete)

    def splitter(self) -> ToolStreamSplitter:
        """A splitter for this reply arriving as a stream."""
        return ToolStreamSplitter(self.family, self.tools, self.choice)


def finish_reason_for(parsed: ParsedReply, base: str | None) -> str | None:
    """``"tool_calls"`` when the reply made calls, else the transport's own reason."""
    return "tool_calls" if parsed.tool_calls else base


def plan_tools(
    template_source: str | None,
    tools: Any,
    tool_choice: Any = None,
    *,
    parallel: bool = True,
    think: Think | None = None,
    family: str | Family | None = None,
    template: ChatTemplate | None = None,
    deadline: float | None = None,
) -> ToolPlan | None:
    """Check ``tools`` and ``tool_choice`` and plan the request; None without tools.

    ``template_source`` is the chat template in use (None: no template, so the generic
    family). ``family`` overrides the detection by name. ``think`` describes the
    template's reasoning block when the reply may start with one (used by forced
    grammars so that the model may still think first). Learning ``template``'s own call
    format renders it within ``deadline`` (past it, DeadlineExceeded).
    """
    checked = check_tools(tools)
    choice = check_tool_choice(tool_choice, checked)
    if not checked:
        return None
    if isinstance(family, Family):
        chosen = family
    elif family is not None:
        if family not in FAMILIES:
            known = ", ".join(sorted(FAMILIES))
            raise OptionValueError(f"unknown tool-call family {family!r} (known: {known})")
        chosen = FAMILIES[family]
    else:
        chosen = detect_family(template_source)
    reads_tools = False
    if template is not None:
        from ..template.caps import capabilities
        from .formats.derive import derive_format

        caps = capabilities(template)
        reads_tools = caps.supports_tools
        if family is None and caps.supports_tool_calls and (chosen is GENERIC or chosen.trigger):
            fmt = derive_format(template, deadline)
            if chosen is GENERIC:
                chosen = GENERIC if fmt is None else derived_family(fmt)
            elif fmt is not None and fmt.trigger != chosen.trigger:
                # the family was matched by markup the template mentions, but its own
                # call turn opens otherwise (Apriel's <tool_calls> beside <tool_call>)
                chosen = derived_family(fmt)
    if choice.mode == "none" and not chosen.native:
        chosen = GENERIC
    return ToolPlan(chosen, checked, choice, parallel and chosen.parallel, think, reads_tools)
