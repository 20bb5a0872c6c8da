"""Raw output to what the user sees: the assembler (UTF-8, echo, stops, usage) and the
split into reasoning, text and tool calls. Used by call/, transports/, the top level.
"""
