"""Messages in, prompt text out: validation, the spec's flattening or the chat template,
control-token breaking, drop_oldest. Used by ``llm``; builds on gguf/, transports/.
"""
