"""Token accounting when the model does not report counts itself."""

from __future__ import annotations

from .types import LLMUsage

# The framework's heuristic: about four characters of English text per token.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str, model: str = "") -> int:
    """Approximate token count by character length.

    ``model`` is accepted for compatibility with jazzmine 0.1.x and not used.
    """
    if not text:
        return 0
    return max(1, len(text) // CHARS_PER_TOKEN)


def usage_from_counts(prompt_tokens: int, completion_tokens: int) -> LLMUsage:
    return LLMUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
