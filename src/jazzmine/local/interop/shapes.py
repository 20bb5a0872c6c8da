"""The shape each framework part's parser accepts, as a JSON schema or a GBNF grammar.

Each shape is what the part's own parser reads (see ``recognise`` for which part is which):
strict enough that a reply held to it always parses, loose enough to say anything the
prompt allows. Lengths are bounded so a small model cannot run on to the token limit inside
a string, and every bound is well above what the prompt asks for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..tools.gbnf import Grammar


@dataclass(frozen=True)
class Shape:
    """What a recognised part's reply is held to."""

    part: str  # "message_enhancer", "conversation_summarizer", ...
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    # Tokens a reply of this shape may need at most (a token is at least a character; the
    # JSON grammar's whitespace counted): the call gets at least these when the instance's
    # max_tokens is lower (a JSON cut short parses no better than free text).
    min_tokens: int = 0
    # Rendered flat (the spec's flattening) on the default model when the format is "auto":
    # measured to answer there where the model's template has it echo the user.
    flat_prompt: bool = False

    @property
    def constraint(self) -> str:
        return "json_schema" if self.json_schema is not None else "grammar"

    def grammar_text(self) -> str:
        """The GBNF the reply is held to. A JSON schema is compiled here, to compact JSON:
        llama.cpp's own conversion lets the model indent, and the default model then
        spends about 30% of an enhancer reply's tokens on new lines and spaces
        (measured: 499 tokens instead of 702 over four replies, the same JSON)."""
        if self.json_schema is None:
            assert self.grammar is not None
            return self.grammar
        grammar = Grammar(compact=True)
        root = grammar.schema(self.json_schema, "root")
        text = grammar.text()
        return text if root == "root" else f"root ::= {root}\n{text}"


def _text(maximum: int, minimum: int = 0) -> dict[str, Any]:
    return {"type": "string", "minLength": minimum, "maxLength": maximum}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# MessageEnhancer._parse_llm_response: the six keys, a number, entities {name, attributes}.
ENHANCER = _object(
    {
        "enhanced_query": _text(300, 1),
        "sentiment_score": {"type": "number", "minimum": -1, "maximum": 1},
        "intent": _text(60, 1),
        "entities": {
            "type": "array",
            "maxItems": 3,
            "items": _object(
                {
                    "name": _text(40, 1),
                    "attributes": {"type": "array", "maxItems": 2, "items": _text(30, 1)},
                },
                ["name", "attributes"],
            ),
        },
        "is_cancellation": {"type": "boolean"},
        "is_continuation": {"type": "boolean"},
    },
    [
        "enhanced_query",
        "sentiment_score",
        "intent",
        "entities",
        "is_cancellation",
        "is_continuation",
    ],
)

# ConversationSummarizer._summarize: an object with the two summaries.
SUMMARY = _object(
    {"short_summary": _text(200, 1), "long_summary": _text(500, 1)},
    ["short_summary", "long_summary"],
)


def flow_ids(ids: list[str]) -> dict[str, Any]:
    """FlowSelector._llm_select: a JSON array of the candidates' ids. At least one: the
    selector treats [] as "nothing valid" and falls back to the top candidate anyway."""
    return {
        "type": "array",
        "items": {"type": "string", "enum": ids},
        "minItems": 1,
        "maxItems": len(ids),
    }


_SLOT_TYPES = {
    "int": {"type": "integer"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "number": {"type": "number"},
    "bool": {"type": "boolean"},
    "boolean": {"type": "boolean"},
}


def slot_values(slots: list[tuple[str, str]]) -> dict[str, Any]:
    """Agent._extract_slots: a JSON object of the parameters asked for (name, type), each
    optional ("include only clearly present parameters")."""
    properties = {name: _SLOT_TYPES.get(kind.lower(), _text(120, 1)) for name, kind in slots}
    return _object(properties, [])


def _literal(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal is a JSON string


# Agent._generate_title_with_llm, normalised by _normalize_generated_title: one plain line,
# no quotes or markdown, starting with a letter or digit.
TITLE = 'root ::= [A-Za-z0-9] [^\\n"`*#<>]{3,90}\n'


# A reply's text inside <response>: markdown, but no tags (the framework strips them) and
# bounded; it starts with a visible character. Where a line may break: anywhere, or
# (single_line) nowhere: in the flattened rendering a new line is where a small model goes
# on to write the user's next turn ("User: ...").
def _text_class(single_line: bool) -> str:
    return "[^<\\n]" if single_line else "[^<]"


def _body(single_line: bool) -> list[str]:
    return ["body ::= [^< \\t\\n] rest", f"rest ::= {_text_class(single_line)}{{0,300}}"]


def agent_reply(
    *,
    sandboxes: list[str],
    confirmation: bool,
    active_flow: bool,
    tasks: bool,
    single_line: bool = False,
) -> str:
    """The agent loop's reply, as ``jazzmine.core.agent.parsers`` reads it: either one
    ``<task sandbox=... mode=...>`` (when the agent has sandboxes and may delegate), or a
    control tag the turn context allows (``<confirm/>``/``<cancel/>`` with a pending
    confirmation, ``<flow_complete/>`` with an active flow) and then exactly one
    ``<response>...</response>``."""
    controls = []
    if confirmation:
        controls += ["<confirm/>", "<cancel/>"]
    if active_flow:
        controls.append("<flow_complete/>")
    rules = ['answer ::= control? "<response>" body "</response>"', *_body(single_line)]
    if controls:
        rules.append("control ::= " + " | ".join(_literal(tag) for tag in controls))
    else:
        rules[0] = 'answer ::= "<response>" body "</response>"'
    if tasks and sandboxes:
        names = " | ".join(_literal(name) for name in sandboxes)
        rules += [
            "root ::= answer | task",
            'task ::= "<task sandbox=\\"" sandbox "\\" mode=\\"" mode "\\">" body "</task>"',
            f"sandbox ::= {names}",
            'mode ::= "plan" | "interactive"',
        ]
    else:
        rules.append("root ::= answer")
    return "\n".join(rules) + "\n"


# What the turn context says, read from the framework's own tags.
_CANDIDATE_ID = re.compile(r'<candidate id="([^"<>]*)"')
_SANDBOX_NAME = re.compile(r'<sandbox name="([^"<>]*)"')
_SLOT_LINE = re.compile(r"^- ([^\s(]+) \(([^,()]+), (?:required|optional)\): ", re.MULTILINE)


def candidate_ids(user_content: str) -> list[str]:
    return list(dict.fromkeys(_CANDIDATE_ID.findall(user_content)))


def sandbox_names(turn_context: str) -> list[str]:
    return list(dict.fromkeys(_SANDBOX_NAME.findall(turn_context)))


def pending_slots(user_content: str) -> list[tuple[str, str]]:
    """(name, type) of the "Pending parameters:" lines, before the user's message."""
    head = user_content.split("\n\nUser message: ", 1)[0]
    return list(dict.fromkeys(_SLOT_LINE.findall(head)))
