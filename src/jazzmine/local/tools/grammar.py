"""GBNF grammars that make a model's tool calls well-formed, per family.

Three shapes, for the three ways a grammar can be applied:

* forced (tool_choice "required" or a named function): the reply is the call(s), in
  the family's format, with arguments that match each tool's schema (an optional
  reasoning block may come first);
* lazy (tool_choice "auto" on llama-server): the grammar only for the calls, applied
  from the moment the model writes the family's trigger (llama-server's
  ``grammar_lazy`` with ``grammar_triggers``). llama-completion has no way to take
  triggers, so per call:
* eager auto (tool_choice "auto" per call): free text that never contains the trigger,
  then optionally the calls. The same language a lazy grammar allows, as one ordinary
  grammar: the "never contains the trigger" part is a small automaton written as rules.

The generic family has no trigger: its reply is always one JSON envelope, so its
grammar is always eager.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .families import Family
from .formats.rules import section_rule
from .gbnf import Grammar, gbnf_char, gbnf_literal
from .reasoning import Think
from .spec import Choice, Tool

# llama.cpp's common_grammar_trigger_type, as llama-server reads it from JSON
TRIGGER_TYPES = {"token": 0, "word": 1, "pattern": 2, "pattern_full": 3}
# A Llama 3 call is the whole reply: the grammar starts at the first "{" (or the
# python tag) after optional whitespace.
_LLAMA3_TRIGGER = r"\s*(\{|<\|python_tag\|>)[\s\S]*"


@dataclass(frozen=True)
class ToolGrammar:
    """A grammar for a tool call reply, and how llama.cpp must apply it."""

    grammar: str
    # apply only from a trigger on (llama-server's grammar_lazy)
    lazy: bool = False
    # (kind, value): kind is "word" or "pattern_full" (regex over the whole reply)
    triggers: tuple[tuple[str, str], ...] = ()
    # markup llama-server must print although it is special tokens
    preserved_tokens: tuple[str, ...] = ()

    def server_fields(self) -> dict[str, Any]:
        """The fields of a llama-server ``/completion`` request that apply this grammar."""
        fields: dict[str, Any] = {"grammar": self.grammar}
        if self.lazy:
            fields["grammar_lazy"] = True
            fields["grammar_triggers"] = [
                {"type": TRIGGER_TYPES[kind], "value": value} for kind, value in self.triggers
            ]
        if self.preserved_tokens:
            fields["preserved_tokens"] = list(self.preserved_tokens)
        return fields


def build_grammar(
    family: Family,
    tools: Sequence[Tool],
    choice: Choice,
    *,
    parallel: bool = True,
    lazy: bool = False,
    think: Think | None = None,
    deadline: float | None = None,
) -> ToolGrammar | None:
    """The grammar for a reply to a request with ``tools``; None when nothing is
    constrained (tool_choice "none", or no tools). Raises ``OptionValueError`` for a
    grammar past ``gbnf.MAX_GRAMMAR_CHARS``, ``DeadlineExceeded`` past
    ``deadline``."""
    if choice.mode == "none" or not tools:
        return None
    if choice.mode == "named":
        tools = [tool for tool in tools if tool.name == choice.name]
    parallel = parallel and family.parallel and choice.mode != "named"
    g = Grammar(deadline)
    preserved = family.markers
    if family.format is not None:
        return _learnt(g, family, tools, choice, parallel, lazy, think)
    calls = _calls(g, family, tools, parallel)
    if family.name == "generic":
        prefix = _think_prefix(g, think)
        body = calls
        if not choice.forces_call:
            content = g.add("content-envelope", f'"{{\\"content\\": " {g.use("json-string")} "}}"')
            body = f"{content} | {calls}"
        g.rules["root"] = f"{prefix}( {body} )" if prefix else body
        return ToolGrammar(_root_first(g))
    if choice.forces_call:
        g.rules["root"] = f"{_think_prefix(g, think)}{calls}"
        return ToolGrammar(_root_first(g), preserved_tokens=preserved)
    if lazy:
        if family.trigger:
            g.rules["root"] = calls
            triggers = (("word", family.trigger),)
        else:  # llama3: the call is the reply itself
            g.rules["root"] = f'( "<|python_tag|>" {g.use("ws")} )? {calls}'
            triggers = (("pattern_full", _LLAMA3_TRIGGER),)
        return ToolGrammar(_root_first(g), True, triggers, preserved)
    if family.trigger:
        prose = avoid(g, family.trigger, "prose")
        g.rules["root"] = f"{prose} {calls}?"
    else:
        # llama3: a reply that starts with "{" (or the python tag) is a call; any other
        # reply is prose, which therefore must not start that way
        prose = g.add("prose", '( [^{<\\x09\\x0A\\x0D\\x20] | "<" [^|] ) [^\\x00]* | "<"')
        g.rules["root"] = f'( "<|python_tag|>" )? {calls} | ( {prose} )?'
    return ToolGrammar(_root_first(g), preserved_tokens=preserved)


def _learnt(
    g: Grammar,
    family: Family,
    tools: Sequence[Tool],
    choice: Choice,
    parallel: bool,
    lazy: bool,
    think: Think | None,
) -> ToolGrammar:
    """The grammar of a format learnt from the template (``formats``)."""
    assert family.format is not None
    fmt, preserved = family.format, family.markers
    if choice.forces_call:
        section = section_rule(g, fmt, tools, parallel, avoid)
        g.rules["root"] = f"{_think_prefix(g, think)}{section}"
        return ToolGrammar(_root_first(g), preserved_tokens=preserved)
    if lazy and family.trigger:
        g.rules["root"] = section_rule(g, fmt, tools, parallel, avoid, from_trigger=True)
        return ToolGrammar(_root_first(g), True, (("word", family.trigger),), preserved)
    section = section_rule(g, fmt, tools, parallel, avoid)
    if family.trigger:
        g.rules["root"] = f"{avoid(g, family.trigger, 'prose')} {section}?"
    else:
        # calls that open with the function's name: the reply is a call or any text
        g.rules["root"] = f"{section} | [^\\x00]*"
    return ToolGrammar(_root_first(g), preserved_tokens=preserved)


def answer_after_thinking(
    schema: dict[str, Any], think: Think, deadline: float | None = None
) -> str:
    """A grammar for JSON valid against ``schema`` that lets the reasoning block come
    first: a response_format holds the answer, not the thinking."""
    g = Grammar(deadline)
    prefix = _think_prefix(g, think)
    g.rules["root"] = f"{prefix}{g.schema(schema, 'answer')}"
    return _root_first(g)


# Rule names in GBNF text, outside strings, character classes and comments.
_GBNF_PARTS = re.compile(
    r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|#[^\n]*|\{[0-9, ]*\}|([A-Za-z][A-Za-z0-9-]*)'
)
_PREFIX = "jazzmine-"


def grammar_after_thinking(grammar: str, think: Think) -> str:
    """A caller's GBNF grammar applied to the answer, with the reasoning block allowed
    before it: the caller's rules are renamed (``root`` included) so that none meets the
    thinking's own, and the new root is the thinking then the caller's root."""

    def rename(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if name is None else f"{_PREFIX}{name}"

    renamed = _GBNF_PARTS.sub(rename, grammar)
    g = Grammar()
    prefix = _think_prefix(g, think)
    g.rules["root"] = f"{prefix}{_PREFIX}root"
    return _root_first(g) + renamed.rstrip("\n") + "\n"


def thinking_only(think: Think) -> str:
    """A grammar for a reasoning block alone (a budgeted first phase): the block must be
    there, and the reply ends with it."""
    g = Grammar()
    inner = avoid(g, think.end, "reasoning")
    opening = "" if think.opened or not think.start else f"{gbnf_literal(think.start)} "
    g.rules["root"] = f"{opening}{inner} {gbnf_literal(think.end)}"
    return _root_first(g)


def _root_first(g: Grammar) -> str:
    root = g.rules.pop("root")
    return f"root ::= {root}\n" + g.text()


def _think_prefix(g: Grammar, think: Think | None) -> str:
    """The reasoning block before a forced call ("" without one), with a space after."""
    if think is None or not think.end:
        return ""
    inner = avoid(g, think.end, "reasoning")
    # templates put a blank line or two after the block ("</think>\n\n")
    block = f"{inner} {gbnf_literal(think.end)} [ \\t\\r\\n]{{0,8}}"
    if think.opened or not think.start:
        return g.add("think", block) + " "
    # or the closing alone: an empty block (MiniMax M3 writes "</mm:think>" so)
    bare = f"{gbnf_literal(think.end)} [ \\t\\r\\n]{{0,8}}"
    return g.add("think", f"( {gbnf_literal(think.start)} {block} | {bare} )?") + " "


def _calls(g: Grammar, family: Family, tools: Sequence[Tool], parallel: bool) -> str:
    """The rule for the call section of a reply: one call, or several if ``parallel``."""
    args = {tool.name: g.schema(tool.schema, f"{tool.name}-args") for tool in tools}

    def json_call(name: str, args_key: str, extra: str = "") -> str:
        head = json.dumps({"name": name})[:-1] + f', "{args_key}": '
        return f"{gbnf_literal(head)} {args[name]}{extra} {gbnf_literal('}')}"

    def choose(hint: str, bodies: dict[str, str]) -> str:
        named = [g.add(f"{hint}-{name}", body) for name, body in bodies.items()]
        return named[0] if len(named) == 1 else g.add(hint, " | ".join(named))

    names = [tool.name for tool in tools]
    if family.name == "hermes":
        one = choose(
            "call",
            {n: f'"<tool_call>\\n" {json_call(n, "arguments")} "\\n</tool_call>"' for n in names},
        )
        return g.add("calls", f'{one} ( "\\n" {one} )*' if parallel else one)
    if family.name == "llama3":
        return choose("call", {n: json_call(n, "parameters") for n in names})
    if family.name == "mistral_nemo":
        id_rule = g.add("call-id", '", \\"id\\": \\"" [a-zA-Z0-9]{9} "\\""')
        one = choose("call", {n: json_call(n, "arguments", f" {id_rule}?") for n in names})
        many = f'{one} ( ", " {one} )*' if parallel else one
        return g.add("calls", f'"[TOOL_CALLS][" {many} "]"')
    if family.name == "mistral":
        call_id = ' ( "[CALL_ID]" [a-zA-Z0-9]{9} )?' if family.model_ids else ""
        one = choose(
            "call",
            {n: f'"[TOOL_CALLS]" {gbnf_literal(n)}{call_id} "[ARGS]" {args[n]}' for n in names},
        )
        return g.add("calls", f"{one}+" if parallel else one)
    # generic: the envelope of docs/tools.md
    one = choose("call", {n: json_call(n, "arguments") for n in names})
    many = f'{one} ( ", " {one} )*' if parallel else one
    return g.add("calls-envelope", f'"{{\\"tool_calls\\": [" {many} "]}}"')


def avoid(g: Grammar, word: str, hint: str) -> str:
    """A rule for any text (empty too) that never contains ``word``.

    A string-matching automaton written as rules: state ``i`` means the text so far ends
    with the first ``i`` characters of ``word``; each rule lists the characters that move
    to another state than 0, and one negated class for all the rest. Right recursion
    only, which llama.cpp's grammar engine runs in constant stack.
    """
    size = len(word)

    def step(state: int, char: str) -> int:
        text = word[:state] + char
        for length in range(min(len(text), size), 0, -1):
            if text.endswith(word[:length]):
                return length
        return 0

    names = [g.add(f"{hint}-{i}", "") for i in range(size)]
    for state in range(size):
        special: dict[str, int] = {}
        for char in dict.fromkeys(word):
            nxt = step(state, char)
            if nxt != 0:
                special[char] = nxt
        alternatives = ['""']
        for char, nxt in special.items():
            if nxt < size:  # nxt == size would complete the word: not allowed
                alternatives.append(f"{gbnf_literal(char)} {names[nxt]}")
        excluded = "".join(gbnf_char(c) for c in special)
        alternatives.append(f"[^{excluded}] {names[0]}" if excluded else f"[^\\x00] {names[0]}")
        g.rules[names[state]] = " | ".join(alternatives)
    return names[0]
