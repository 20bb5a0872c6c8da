"""The ways of reaching a model: the Transport protocol (``base``), per call, and warm in
server/; argv, binaries, RPC workers, load-time config. Imports process/, reply/, gguf/.
"""
