"""Chat templates rendered byte for byte as llama.cpp renders them: capabilities,
reasoning, tools, markers, rewrites. Loaded lazily (jinja2); builds on engine/, gguf/.
"""
