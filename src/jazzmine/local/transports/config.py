"""A LocalLLM's load-time settings, validated once, shared by every transport."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .. import defaults
from ..gguf import reader as gguf
from ..request import GenerationRequest

GGUF_MAGIC = b"GGUF"
# Room left for the reply when the caller sets no max_tokens and no n_ctx.
DEFAULT_REPLY_ROOM = 1024
# Context per server slot when the caller sets no n_ctx (warm mode cannot size per call).
DEFAULT_SERVER_CONTEXT = 4096
# llama.cpp caps -ngl at the model's layer count, so this means "every layer".
ALL_LAYERS = 999
_CONTEXT_STEP = 256
# llama.cpp's CPU threads meet at an OpenMP barrier after every graph node, where
# libgomp spins about 300,000 rounds before it sleeps. When two llama.cpp processes share
# the cores (concurrent calls, a warm server beside a per-call run, two agents), each
# spins on a core the other's late thread needs: generation fell about 20x here. A short
# spin keeps a lone run's speed and ends that (bench/results/perf.md, section 7).
SPIN_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}
_SPIN_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@dataclass(frozen=True)
class LocalConfig:
    binary_path: str
    # A GGUF the caller named, or None (then the default model for llama.cpp binaries).
    model_path: str | None
    wants_default_model: bool
    n_ctx: int | None
    threads: int | None
    # An int, or "auto": llama.cpp's own fitting where the build has a GPU (a no-op on CPU).
    n_gpu_layers: int | str | None
    extra_args: tuple[str, ...]
    env: Mapping[str, str] | None
    argv_template: tuple[str, ...] | None
    server_path: str | None
    # Seconds the warm server stays loaded when idle; None: per-call mode; < 0: until close.
    keep_alive: float | None
    # llama.cpp RPC workers ("host:port") that hold the offloaded layers.
    rpc_servers: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] | None = None

    def offload_args(self) -> list[str]:
        """Layers and where they go: -ngl, --rpc, -ts (shared by both transports)."""
        argv: list[str] = []
        layers = self.n_gpu_layers
        if layers == "auto":
            from .binary import gpu_devices  # a probe of the binary, once

            # llama.cpp sizes the offload and the context to the device's free memory.
            layers = None
            if gpu_devices(self.binary_path):
                argv += ["-ngl", "auto", "--fit", "on"]
        if layers is None and self.rpc_servers and not argv:
            layers = ALL_LAYERS  # the workers are there to hold the model
        if layers is not None:
            argv += ["-ngl", str(layers)]
        if self.rpc_servers:
            argv += ["--rpc", ",".join(self.rpc_servers)]
        if self.tensor_split:
            argv += ["-ts", ",".join(f"{share:g}" for share in self.tensor_split)]
        return argv

    def resolved_model(self, llama_binary: bool) -> str | None:
        """The GGUF passed to the binary: the caller's, else the default for llama.cpp."""
        if self.model_path is not None:
            return self.model_path
        if self.wants_default_model and llama_binary and self.argv_template is None:
            return str(defaults.ensure_default_model())
        return None

    def context_for_call(self, request: GenerationRequest, model_path: str | None) -> int:
        """Per-call context: sized to the call unless the caller chose one.

        A token is never shorter than a byte, so prompt bytes bound the prompt's tokens;
        llama.cpp would otherwise reserve the model's whole trained context.
        """
        if self.n_ctx is not None:
            return self.n_ctx
        reply_room = request.max_tokens or DEFAULT_REPLY_ROOM
        needed = len(request.prompt.encode("utf-8")) + 2 + reply_room
        size = max(512, math.ceil(needed / _CONTEXT_STEP) * _CONTEXT_STEP)
        trained = trained_context(model_path)
        return 0 if trained is not None and size >= trained else size

    def server_context(self, model_path: str | None) -> int:
        """Context per slot of a warm server."""
        if self.n_ctx is not None and self.n_ctx > 0:
            return self.n_ctx
        trained = trained_context(model_path)
        if self.n_ctx == 0 and trained is not None:
            return trained
        return min(DEFAULT_SERVER_CONTEXT, trained or DEFAULT_SERVER_CONTEXT)


def trained_context(model_path: str | None) -> int | None:
    """The model's trained context length, from its GGUF header."""
    if model_path is None or not os.path.exists(model_path):
        return None
    try:
        arch = gguf.read_metadata(model_path, ["general.architecture"]).get("general.architecture")
        if not isinstance(arch, str):
            return None
        key = f"{arch}.context_length"
        value = gguf.read_metadata(model_path, [key]).get(key)
    except (OSError, gguf.GGUFError):
        return None
    return value if isinstance(value, int) else None


def llama_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a llama.cpp child: ``env`` (or ours), plus a short OpenMP spin
    unless the caller chose how OpenMP waits."""
    chosen = dict(os.environ if env is None else env)
    if not any(name in chosen for name in _SPIN_SETTINGS):
        chosen.update(SPIN_DEFAULTS)
    return chosen


def looks_like_gguf(model: str | None) -> bool:
    """A model name that is a GGUF file (passed to the binary) rather than a label.

    An existing file is one when it starts with GGUF's magic, whatever its name; a name
    ending in ``.gguf`` always is, so a missing or damaged file reaches llama.cpp and
    ``gguf.reader.file_problem``, which say what is wrong with it, instead of becoming a label.
    """
    if not model:
        return False
    if os.path.splitext(model)[1].lower() == ".gguf":
        return True
    path = os.path.expanduser(model)
    if not os.path.isfile(path):  # not a FIFO or a device either: reading those may block
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:
        return False
