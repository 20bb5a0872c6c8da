"""Tool calls that always parse, and reasoning blocks: shapes, families, grammars, parsing,
streaming. Pure: imports only errors and types; ``tools.plan`` is its front door.
"""
