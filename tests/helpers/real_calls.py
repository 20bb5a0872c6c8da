"""Conversations and the deterministic builder shared by the tests that run a real model.

Plain Python (no fixtures): the messages are chosen for what the small models do with
them, so a test can count on a long answer, an answer naming colours, or (for the base
model) a reply that goes on to write the next user turn.
"""

from __future__ import annotations

from jazzmine.local import LocalLLM, MessagePart

QUESTION = [MessagePart("user", "What is the capital of France?")]
# A prompt the models answer at length, for cutting with stop sequences.
LISTING = [MessagePart("user", "List the planets of the solar system.")]
COLOURS = [MessagePart("user", "What are the three primary colours?")]
# A conversation after which the base model goes on to write the user's next turn.
CHATTY = [
    MessagePart("user", "Say hello."),
    MessagePart("assistant", "Hello! How can I help you today?"),
    MessagePart("user", "Thanks, bye."),
]


def deterministic(binary: str, model: str, **options: object) -> LocalLLM:
    """Greedy and seeded, so two runs of the same prompt give the same text."""
    options.setdefault("max_tokens", 24)
    return LocalLLM(binary_path=binary, model=model, temperature=0.0, seed=7, **options)  # type: ignore[arg-type]
