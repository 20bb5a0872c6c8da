"""jazzmine: the LLM layer. The public API lives in :mod:`jazzmine.core.llm`."""

__version__ = "0.2.0"
