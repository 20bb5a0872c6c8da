"""One call from request to response (the one error boundary), its tools and reasoning
plan, the concurrency limit and the thread bridge. Used by ``llm`` and ``stream``.
"""
