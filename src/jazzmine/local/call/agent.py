"""A call's tools and reasoning, resolved against the chat template in use.

``LocalLLM`` asks this module three things per call: how the messages and the template
must carry the tools (``ResolvedAgent.messages``, ``.template_tools``), what constrains the
reply (``ResolvedAgent.constraint``: an eager grammar per call, llama-server's lazy fields
warm), and how to read the reply back (``ResolvedAgent.reply_parts``). Everything here is
pure: the pieces come from ``tools`` (families, grammars, parsing) and ``reasoning``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionValueError
from ..options.agent import tool_choice_of
from ..reply.parts import Piece, ReplyParts
from ..request import GenerationRequest
from ..tools.reasoning import ReasoningSplitter, Think
from ..types import MessagePart

if TYPE_CHECKING:
    from ..template.engine.source import ChatTemplate
    from ..tools.grammar import ToolGrammar
    from ..tools.plan import ToolPlan
    from ..tools.spec import Tool

# The tool machinery (families, grammars, parsing) and the grammar builders load with the
# first call that needs them: a plain call imports none of it.


@dataclass(frozen=True)
class Constraint:
    """What holds the reply to a shape: at most one of json_schema and grammar, and the
    fields that replace ``grammar`` on llama-server (a lazy grammar with triggers)."""

    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    server_grammar: dict[str, Any] | None = None

    @property
    def any(self) -> bool:
        return self.json_schema is not None or self.grammar is not None


@dataclass(frozen=True)
class ResolvedAgent:
    tools: ToolPlan | None
    # The template's reasoning block (None: the template does not think).
    think: Think | None
    # The template's thinking switch: None leaves the template's default.
    enable_thinking: bool | None
    # At most this many tokens of thinking (None: no cap; only for templates that think).
    budget: int | None = None
    # The call's deadline: building the grammar and checking the reply's calls stop
    # there (DeadlineExceeded), as rendering the template does.
    deadline: float | None = None
    # The caller's response_format or grammar shapes the answer (tool_choice "none"):
    # the reply is then the caller's, read as written.
    shaped: bool = False

    @property
    def template_tools(self) -> list[dict[str, Any]] | None:
        return self.tools.template_tools if self.tools is not None else None

    def messages(self, messages: list[MessagePart]) -> list[MessagePart]:
        return self.tools.messages(messages) if self.tools is not None else messages

    def with_prompt(self, prompt: str) -> ResolvedAgent:
        """Once the prompt is written: does it open the reasoning block itself?"""
        if self.think is None:
            return self
        think = dataclasses.replace(self.think, opened=self.think.opened_by(prompt))
        # reasoning=False and a prompt that leaves the block closed: a forced call's
        # grammar lets no thinking come first (a small model would think to the end)
        tool_think = None if self.enable_thinking is False and not think.opened else think
        tools = None if self.tools is None else dataclasses.replace(self.tools, think=tool_think)
        return dataclasses.replace(self, think=think, tools=tools)

    def shaped_by(self, json_schema: dict[str, Any] | None, grammar: str | None) -> ResolvedAgent:
        """This plan once the caller's constraint of the answer is known."""
        return dataclasses.replace(self, shaped=json_schema is not None or grammar is not None)

    def constraint(self, json_schema: dict[str, Any] | None, grammar: str | None) -> Constraint:
        """The reply's constraint: the caller's (after any thinking), or the tools'."""
        if self.tools is not None and self.tools.choice.mode != "none":
            if json_schema is not None or grammar is not None:
                raise OptionValueError(
                    "give tools or response_format/grammar, not both: a reply is either "
                    "tool calls or the structured answer (use tool_choice='none' to keep the "
                    "tools in the prompt and constrain the answer)"
                )
            eager = self._tool_grammar(lazy=False)
            lazy = self._tool_grammar(lazy=True)
            if eager is None or lazy is None:
                return Constraint()
            return Constraint(grammar=eager.grammar, server_grammar=lazy.server_fields())
        if json_schema is not None:
            from ..tools.schema import check_plain

            # the caller's schema is printed whole (argv, a request body): bounded first
            problem = check_plain(json_schema, "response_format's schema")
            if problem is not None:
                raise OptionValueError(problem)
        if self.think is not None and (json_schema is not None or grammar is not None):
            from ..tools.grammar import answer_after_thinking, grammar_after_thinking

            if json_schema is not None:
                return Constraint(
                    grammar=answer_after_thinking(json_schema, self.think, self.deadline)
                )
            assert grammar is not None
            return Constraint(grammar=grammar_after_thinking(grammar, self.think))
        return Constraint(json_schema, grammar)

    def _tool_grammar(self, *, lazy: bool) -> ToolGrammar | None:
        """``ToolPlan.grammar``, built within the call's deadline."""
        assert self.tools is not None
        return self.tools.grammar(lazy=lazy, deadline=self.deadline)

    def thinking_request(self, request: GenerationRequest, budget: int) -> GenerationRequest:
        """A reasoning budget's first phase: the thinking alone, at most ``budget`` tokens
        (``answer_request`` makes the second)."""
        from ..tools.grammar import thinking_only

        assert self.think is not None
        max_tokens = budget if request.max_tokens is None else min(budget, request.max_tokens)
        return dataclasses.replace(
            request,
            max_tokens=max_tokens,
            json_schema=None,
            grammar=thinking_only(self.think),
            server_grammar=None,
        )

    def answer_request(
        self,
        original: GenerationRequest,
        caller: tuple[dict[str, Any] | None, str | None],
        thought: str,
        used: int,
    ) -> GenerationRequest | None:
        """The second phase: the prompt with the thinking so far and the block closed (as
        the model would have closed it), the caller's constraint ``caller`` (json_schema,
        grammar) on the answer alone, and what is left of max_tokens. None when nothing
        is left."""
        assert self.think is not None
        remaining = None if original.max_tokens is None else original.max_tokens - used
        if remaining is not None and remaining <= 0:
            return None
        closing = _closing(self.think, thought)
        tools = None if self.tools is None else dataclasses.replace(self.tools, think=None)
        answer_plan = dataclasses.replace(self, think=None, tools=tools)
        constraint = answer_plan.constraint(*caller)
        return dataclasses.replace(
            original,
            prompt=f"{original.prompt}{thought}{closing}",
            max_tokens=remaining,
            json_schema=constraint.json_schema,
            grammar=constraint.grammar,
            server_grammar=constraint.server_grammar,
        )

    def reply_parts(self) -> ReplyParts:
        # tool_choice "none" reads the reply with the tools too: a call the model writes
        # anyway is left out of the text (and counted), unless the caller shaped it
        tools = None if self.shaped else self.tools
        thinking = None
        if self.think is not None:
            # a reply that opens with a call has skipped the thinking the prompt opened
            trigger = tools.family.trigger if tools is not None else ""
            thinking = self.think.splitter(skipped_by=(trigger,) if trigger else ())
        if tools is None:
            return ReplyParts(None, thinking)
        return _CheckedInTime(tools, thinking, self.deadline)

    def metrics(self) -> dict[str, Any]:
        if self.tools is None:
            return {}
        return {"tool_family": self.tools.family.name, "tool_choice": self.tools.choice.mode}


class _CheckedInTime(ReplyParts):
    """Reply parts whose tool calls are checked within the call's deadline: past it, the
    check raises ``DeadlineExceeded``, which the call reports as its timeout."""

    def __init__(
        self, plan: ToolPlan, thinking: ReasoningSplitter | None, deadline: float | None
    ) -> None:
        super().__init__(plan, thinking)
        self._deadline = deadline

    def finish(self, *, complete: bool) -> list[Piece]:
        from ..tools.validate import deadline_scope

        with deadline_scope(self._deadline):
            return super().finish(complete=complete)


def resolve_agent(
    template: ChatTemplate | None,
    tools: Sequence[Tool] | None,
    tool_choice: Any,
    parallel: bool,
    reasoning: bool | int,
    deadline: float | None = None,
) -> ResolvedAgent:
    checked = tuple(tools or ())
    choice = tool_choice_of(tool_choice, checked) if checked or tool_choice else None
    if checked and template is not None:
        from ..template.tools import tool_template

        # llama.cpp renders with the model's tool-use template when it has one, and
        # reads the reply in that template's format
        template = tool_template(template)
    # Kept with reasoning=False too: a template that cannot turn thinking off still
    # gets its thinking kept out of the answer.
    think = _think_of(template, deadline)
    plan = None
    if checked:
        source = template.source if template is not None else None
        from ..tools.plan import plan_tools

        plan = plan_tools(
            source,
            [t.as_template_tool() for t in checked],
            choice_dict(choice),
            template=template,
            deadline=deadline,
        )
        plan = dataclasses.replace(plan, parallel=parallel and plan.parallel) if plan else None
    budget = reasoning if think is not None and type(reasoning) is int else None
    return ResolvedAgent(plan, think, False if reasoning is False else None, budget, deadline)


def _closing(think: Think, thought: str) -> str:
    """What closes the block after ``thought`` as the template writes it (Qwen3:
    "\n</think>\n\n"; Cohere: "<|END_THINKING|><|START_TEXT|>"), or what is left of that
    when the model closed the block itself."""
    end = think.end.strip()
    written = think.closing
    if end in written:
        after = written[written.find(end) + len(end) :]
        if thought.rstrip().endswith(end):
            return after
        return written
    if thought.rstrip().endswith(end):
        return "\n\n"
    closing = think.end if think.end.startswith("\n") else f"\n{think.end}"
    return closing + ("" if think.end.endswith("\n") else "\n\n")


def choice_dict(choice: Any) -> Any:
    """A checked Choice back in the caller's shape, for ``plan_tools``."""
    if choice.mode == "named":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _think_of(template: ChatTemplate | None, deadline: float | None = None) -> Think | None:
    """The template's reasoning block: as the template writes it (``template.thinking``),
    else the markers llama.cpp's autoparser infers."""
    if template is None:
        return None
    from ..template.caps import capabilities  # the template engine is loaded already
    from ..template.thinking import thinking_format

    written = thinking_format(template, deadline)
    if written is not None:
        return Think(
            written.start,
            written.end,
            prompt_opening=written.prompt_opening,
            answer_start=written.answer_start,
            answer_end=written.answer_end,
            maybe_open=written.prompt_closes,
            closing=written.closing,
        )
    caps = capabilities(template)
    if caps.thinking and caps.reasoning_end:
        return Think(caps.reasoning_start, caps.reasoning_end)
    if "</think>" in template.source:
        # Hand-written: the template strips "<think>...</think>" from past turns' content
        # but never writes reasoning itself (Kimi K2, LFM2): nothing to derive from, yet
        # a model trained on it writes the block
        return Think()
    return None
