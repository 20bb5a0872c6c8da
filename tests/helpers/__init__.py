"""Shared test helpers: fake binaries, process and socket probes, real-call texts, GGUF
and template builders, the GBNF recogniser. Tests import them as ``helpers.<name>``
(``tests/`` is on pytest's ``pythonpath``)."""
