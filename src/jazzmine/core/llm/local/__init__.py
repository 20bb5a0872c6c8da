"""The local provider: per-call processes (the spec) behind the common jazzmine API."""

from .llm import LocalLLM

__all__ = ["LocalLLM"]
