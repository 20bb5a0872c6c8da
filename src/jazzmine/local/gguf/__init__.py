"""A GGUF header reader: metadata without weights (``gguf.reader`` is the front door;
the walk, the format table, the string-array guess, the vocabulary). A leaf.
"""
