"""Warm mode: one streamed request to a kept, private llama-server, its /completion API,
its process and the registry sharing it. Only ``llm`` imports it (lazily).
"""
