"""What a kept llama-server is: the binary found for it, and the key that says which
LocalLLMs may share one (``registry``), with the command line it runs (``process``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import LocalConfig

SERVER_NAME = "llama-server"
# --swa-full keeps the whole cache of sliding-window layers (Gemma 3 and others), so a
# prompt that repeats an earlier one reuses all of it, not just the last checkpoint; it
# also makes a repeated call give exactly the text a fresh one gives.
OPTIONAL_SERVER_FLAGS = ("--swa-full", "--no-webui", "--no-warmup")


def find_server(config: LocalConfig) -> str:
    """``server_path``, else ``llama-server`` beside the binary; never a silent fallback."""
    if config.server_path is not None:
        candidates = [config.server_path]
    else:
        directory = os.path.dirname(os.path.realpath(config.binary_path))
        candidates = [os.path.join(directory, SERVER_NAME)]
        if os.path.dirname(config.binary_path) != directory:
            candidates.append(os.path.join(os.path.dirname(config.binary_path), SERVER_NAME))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "warm mode (keep_alive) needs llama-server, and none was found; looked at: "
        + ", ".join(candidates)
        + " (pass server_path=, or set keep_alive=None for per-call processes)"
    )


@dataclass(frozen=True)
class ServerKey:
    """What makes two LocalLLMs able to share one server."""

    server_path: str
    model_path: str
    context_per_slot: int
    slots: int
    threads: int | None
    offload_args: tuple[str, ...]
    extra_args: tuple[str, ...]
    # Optional flags this llama-server accepts (from its --help).
    optional_flags: tuple[str, ...] = ()
    # The child's environment when the caller restricted it (None: inherited).
    env: tuple[tuple[str, str], ...] | None = None

    def argv(self, socket_path: str) -> list[str]:
        # llama-server divides -c among its slots: each call keeps the context it asked for.
        size = ["-c", str(self.context_per_slot * self.slots), "-np", str(self.slots)]
        # Private by construction: no /slots (it shows every prompt and reply), no network.
        private = ["--no-slots", "--offline"]
        argv = [self.server_path, "-m", self.model_path, "--host", socket_path, *size, *private]
        argv += self.optional_flags
        if self.threads is not None:
            argv += ["-t", str(self.threads)]
        return argv + list(self.offload_args) + list(self.extra_args)
