"""The names a caller may bring from other libraries (llama-cpp-python, Ollama, Hugging
Face, OpenAI, Anthropic, llama.cpp's own flags), and what each stands for here, so a
misspelt or borrowed name is answered with ours (``table.unexpected_option``).
"""

from __future__ import annotations

# Other libraries' names for these options (llama-cpp-python, Ollama, Hugging Face,
# OpenAI, Anthropic, llama.cpp's own flags), so a name brought from one of them is
# answered with ours.
ALIASES = {
    "model_path": "model",
    "model_name": "model",
    "context_size": "n_ctx",
    "context_length": "n_ctx",
    "context_window": "n_ctx",
    "n_context": "n_ctx",
    "ctx_size": "n_ctx",
    "num_ctx": "n_ctx",
    "n_threads": "threads",
    "num_thread": "threads",
    "num_threads": "threads",
    "max_token": "max_tokens",
    "max_new_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "n_predict": "max_tokens",
    "stop_sequences": "stop",
    "stop_words": "stop",
    "temp": "temperature",
    "random_seed": "seed",
    "num_gpu": "n_gpu_layers",
    "gpu_layers": "n_gpu_layers",
    "ngl": "n_gpu_layers",
    "request_timeout": "timeout",
    "binary": "binary_path",
    "executable": "binary_path",
    "server_binary": "server_path",
    "concurrency": "max_concurrency",
    "n_parallel": "max_concurrency",
    "extra_argv": "extra_args",
    "args": "extra_args",
    "environment": "env",
    "rpc": "rpc_servers",
    "json_schema": "response_format",
    "template": "chat_template",
    "repetition_penalty": "repeat_penalty",
    "functions": "tools",
    "function_call": "tool_choice",
    "thinking": "reasoning",
    "enable_thinking": "reasoning",
    "think": "reasoning",
    "reasoning_budget": "reasoning",
    "thinking_budget": "reasoning",
}
# llama.cpp settings with no option of their own: they go to the binary in extra_args.
LLAMA_FLAGS = {
    "typical_p": "--typical",
    "repeat_last_n": "--repeat-last-n",
    "mirostat": "--mirostat",
    "n_batch": "--batch-size",
    "n_ubatch": "--ubatch-size",
    "flash_attn": "--flash-attn",
    "lora_path": "--lora",
}


def squashed(name: str) -> str:
    """maxTokens, max-tokens and MAX_TOKENS all read as one name."""
    return name.lower().replace("_", "").replace("-", "")
