"""One call's request and outcome, and what a transport prints around the reply: plain
data passed between LocalLLM, its transports and reply assembly."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a transport needs to run one generation, built once per call."""

    prompt: str
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    # Caller stops and next-turn markers: where the reply ends.
    stop_sequences: tuple[str, ...]
    # Output constraints (at most one): a JSON schema, or llama.cpp GBNF grammar text.
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    # Further sampling settings, (option name, value) in a fixed order: top_p, top_k,
    # min_p and the penalties. The names are llama-server's request fields; per call
    # each becomes its llama.cpp flag (``transports.argv.SAMPLING_FLAGS``).
    sampling: tuple[tuple[str, float], ...] = ()
    # llama-server's fields for the grammar when warm mode can apply it better than
    # ``grammar`` (a lazy tool-call grammar and its triggers); per call, ``grammar``.
    server_grammar: dict[str, Any] | None = None

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.grammar is not None


@dataclass
class RunOutcome:
    """What a transport learned besides the text: how the run ended and what it counted."""

    stderr: str = ""
    exit_code: int | None = None
    # Token counts reported by the model process, when it reports them.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # True/False when the transport knows whether the token limit ended the reply.
    hit_token_limit: bool | None = None
    # True when we ended the run ourselves because the reply was already complete.
    interrupted: bool = False
    # True when the binary prints a marker when the model ends its reply, so a reply
    # that ended without one was cut by a limit.
    marks_end_of_text: bool = False
    details: dict[str, Any] = field(default_factory=dict)


# What llama.cpp says when it rejects a grammar or a JSON schema.
_CONSTRAINT_ERROR = re.compile(
    r"(error parsing grammar:[^\n]*|JSON schema conversion failed:[^\n]*(?:\n[^\n]+)?"
    r"|failed to parse grammar[^\n]*)"
)


def constraint_error(stderr: str) -> str | None:
    """llama.cpp's own message when it rejected the grammar or schema, if it did."""
    found = _CONSTRAINT_ERROR.findall(stderr)
    return "; ".join(dict.fromkeys(message.strip() for message in found)) if found else None


# llama.cpp's closing statistics on stderr. llama-completion counts "runs" and a
# "samplers" total (prompt + sampled); llama-server and llama-cli count "tokens".
_PROMPT_EVAL = re.compile(r"prompt eval time\s*=\s*[\d.]+ ms /\s*(\d+) tokens")
_EVAL = re.compile(r"(?<!prompt )eval time\s*=\s*[\d.]+ ms /\s*(\d+) (runs|tokens)")
_SAMPLED = re.compile(r"samplers time\s*=\s*[\d.]+ ms /\s*(\d+) tokens")


def parse_llama_counts(stderr: str) -> tuple[int | None, int | None]:
    """(prompt_tokens, completion_tokens) from llama.cpp's timing lines, if printed."""
    prompt_match = _PROMPT_EVAL.findall(stderr)
    eval_match = _EVAL.findall(stderr)
    if not prompt_match or not eval_match:
        return None, None
    prompt_tokens = int(prompt_match[-1])
    count, unit = eval_match[-1]
    sampled = _SAMPLED.findall(stderr)
    if unit == "runs" and sampled:
        completion_tokens = int(sampled[-1]) - prompt_tokens
    elif unit == "runs":
        # The last sampled token is never evaluated.
        completion_tokens = int(count) + 1
    else:
        completion_tokens = int(count)
    return prompt_tokens, max(0, completion_tokens)


@dataclass(frozen=True)
class OutputShape:
    """What a binary prints around the reply, so it can be removed.

    ``preamble_end``: everything up to and including this text is chrome (a banner).
    ``echo``: the prompt, when the binary may print it back before the reply.
    ``end_markers``: printed by the binary when the model itself ended the reply.
    ``trailer_markers``: the reply is over and chrome follows (timings, prompts for input).
    ``token_budget``: for a binary that was not told the caller's ``max_tokens``: the reply
    is cut here (estimated tokens, as usage is), and the run ended.
    ``closing``: printed after the reply when the binary ends on its own (llama-completion
    ends its output with an empty line); never reply text, never part of a stop.
    ``marks_every_end``: the binary prints an end marker whenever the model ends the reply,
    so output without one was cut by a limit.
    """

    preamble_end: str | None = None
    echo: str | None = None
    end_markers: tuple[str, ...] = ()
    trailer_markers: tuple[str, ...] = ()
    token_budget: int | None = None
    closing: str = ""
    marks_every_end: bool = False
