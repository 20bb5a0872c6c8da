"""The abstract provider every jazzmine LLM implements.

With the jazzmine framework installed it derives from the framework's ``BaseLLM``, so
``isinstance(llm, jazzmine.core.llm.BaseLLM)`` holds for ``LocalLLM``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from .framework import base_class
from .types import LLMResponse, MessagePart


class BaseLLM(base_class("BaseLLM", ABC)):  # type: ignore[misc]
    def __init__(
        self,
        model: str,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout

    # ---------- sync ----------
    @abstractmethod
    def generate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse: ...

    @abstractmethod
    def stream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> Iterator[str]: ...

    # ---------- async ----------
    @abstractmethod
    async def agenerate(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> LLMResponse: ...

    @abstractmethod
    def astream(
        self, messages: Sequence[MessagePart], *, stop: Iterable[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[str]: ...

    # ---------- resources ----------
    def close(self) -> None:
        """Release synchronous resources. Safe to call more than once."""

    async def aclose(self) -> None:
        """Release asynchronous resources. Safe to call more than once."""
        self.close()

    def health_check(self) -> bool:
        return True

    def __enter__(self) -> BaseLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> BaseLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
