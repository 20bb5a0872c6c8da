"""A call's checked messages and options made ready to run: the prompt written, the
request built, the tools and reasoning planned against the template in use.

``LocalLLM`` hands ``prepare`` the call's own options over the instance's values
(``CallDefaults``); the call's flow prepares again when it leaves messages out.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import defaults
from ..options.checks import constraint_of
from ..options.table import SAMPLING_OPTIONS
from ..prompt.writer import PromptWriter
from ..request import GenerationRequest
from ..transports.base import Transport
from ..types import MessagePart
from .agent import resolve_agent
from .flow import Prepared

if TYPE_CHECKING:
    from ..interop.shapes import Shape


@dataclass(frozen=True)
class CallDefaults:
    """An instance's values for what a call may set for itself."""

    max_tokens: int | None
    temperature: float | None
    seed: int | None
    stop: tuple[str, ...]
    response_format: Mapping[str, Any] | None
    grammar: str | None
    sampling: dict[str, Any]
    tools: Sequence[Any] | None
    tool_choice: Any
    parallel_tool_calls: bool
    reasoning: bool | int
    framework_shapes: bool = True


def prepare(
    messages: list[MessagePart],
    options: Mapping[str, Any],
    instance: CallDefaults,
    writer: PromptWriter,
    transport: Transport,
    deadline: float | None = None,
) -> Prepared:
    """Checked ``messages`` and call ``options`` (over ``instance``) made ready to run."""
    agent = resolve_agent(
        writer.template(transport),
        options.get("tools", instance.tools),
        options.get("tool_choice", instance.tool_choice),
        options.get("parallel_tool_calls", instance.parallel_tool_calls),
        options.get("reasoning", instance.reasoning),
        deadline,
    )
    if "response_format" in options or "grammar" in options:
        # A per-call constraint replaces the instance's, whichever kind it is.
        json_schema, grammar = constraint_of(options.get("response_format"), options.get("grammar"))
    else:
        json_schema, grammar = constraint_of(instance.response_format, instance.grammar)
    max_tokens = options.get("max_tokens", instance.max_tokens)
    shaped: dict[str, Any] = {}
    flat = False
    # A shape is held by a grammar: only llama.cpp (a binary it recognised, or its server)
    # takes one; another binary's calls are left as the framework wrote them.
    if (
        json_schema is None
        and grammar is None
        and agent.tools is None
        and transport.runs_llama_cpp()
    ):
        # The default model answers better flattened in places (Shape.flat_prompt).
        may_flatten = writer.prompt_format == "auto" and _default_model(writer)
        shape = _framework_shape(
            messages, options.get("framework_shapes", instance.framework_shapes), may_flatten
        )
        if shape is not None:
            json_schema, grammar = None, shape.grammar_text()
            shaped = {"framework_part": shape.part, "framework_constraint": shape.constraint}
            if "max_tokens" not in options and max_tokens is not None:
                # The instance's limit is for free text; a cut JSON parses no better.
                max_tokens = max(max_tokens, shape.min_tokens)
            flat = shape.flat_prompt and may_flatten
    written = writer.write(
        agent.messages(messages),
        transport,
        deadline,
        tools=agent.template_tools,
        enable_thinking=agent.enable_thinking,
        flat=flat,
    )
    agent = agent.with_prompt(written.prompt)
    constraint = agent.constraint(json_schema, grammar)
    agent = agent.shaped_by(json_schema, grammar)
    turn_markers = written.turn_markers
    if constraint.any and (agent.tools is None or agent.tools.choice.forces_call):
        # A constrained reply cannot start a new turn; a marker must not cut it short.
        turn_markers = ()
    request = GenerationRequest(
        prompt=written.prompt,
        max_tokens=max_tokens,
        temperature=options.get("temperature", instance.temperature),
        seed=options.get("seed", instance.seed),
        stop_sequences=(*instance.stop, *options["stop"], *turn_markers),
        json_schema=constraint.json_schema,
        grammar=constraint.grammar,
        sampling=_sampling(options, instance.sampling),
        server_grammar=constraint.server_grammar,
    )
    if agent.budget is None:
        return Prepared(request, written.prompt_format, agent, metrics=shaped)
    # Thinking first, alone and capped; then the answer, with the thinking closed.
    return Prepared(
        agent.thinking_request(request, agent.budget),
        written.prompt_format,
        agent,
        functools.partial(agent.answer_request, request, (json_schema, grammar)),
        metrics=shaped,
    )


def _default_model(writer: PromptWriter) -> bool:
    """The call runs this package's default model (where the parts' renderings were measured)."""
    path = writer.model_path
    return path is not None and os.path.basename(path) == defaults.DEFAULT_MODEL_FILE


def _framework_shape(messages: list[MessagePart], enabled: bool, flat: bool) -> Shape | None:
    """The shape of the jazzmine framework part these messages come from, if any. Only
    when the framework is already imported: standalone, ``interop`` is never loaded."""
    if not enabled or "jazzmine.core" not in sys.modules:
        return None
    from ..interop.recognise import shape_for

    return shape_for(messages, flat=flat)


def _sampling(
    options: Mapping[str, Any], instance: Mapping[str, Any]
) -> tuple[tuple[str, float], ...]:
    """The sampling settings this call sets, the call's own over the instance's."""
    values = ((name, options.get(name, instance[name])) for name in SAMPLING_OPTIONS)
    return tuple((name, value) for name, value in values if value is not None)
