"""The model options `jazzmine run` and `jazzmine chat` share: on the parser, and made
into the LocalLLM the command talks to."""

from __future__ import annotations

import argparse
from typing import Any

from .. import LocalLLM


def add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model", help="path to a GGUF model (default: the one `jazzmine setup` installed)"
    )
    command.add_argument(
        "--binary",
        help="path to the model binary (default: the llama.cpp `jazzmine setup` built; "
        "$JAZZMINE_LLAMA_BIN)",
    )
    command.add_argument("--max-tokens", type=int, default=256)
    command.add_argument("--temperature", type=float, default=0.7)
    command.add_argument("--seed", type=int)
    command.add_argument(
        "--n-ctx", type=int, help="context size in tokens (default: sized to the conversation)"
    )


def llm_from_args(
    args: argparse.Namespace, keep_alive: str | int | None = None, **options: Any
) -> LocalLLM:
    return LocalLLM(
        binary_path=args.binary,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        n_ctx=args.n_ctx,
        keep_alive=keep_alive,
        **options,
    )
