"""LocalLLM's options: the table and aliases, one check per kind of value, the agent
options, the argv refused, durations. Used by ``llm`` and call/; builds on transports/.
"""
