"""Which llama.cpp backend to build: the CPU, or the GPU the machine has.

``jazzmine setup --backend auto|cpu|cuda|vulkan|metal``. ``auto`` picks CUDA when the
toolkit (``nvcc``) and an NVIDIA driver (``nvidia-smi`` lists a GPU) are both there,
Metal on Apple silicon, else the CPU. Each backend is its own build, cached under its
own key (``defaults.build_key``); the CPU build's key is the one it always had, so
choosing a GPU never throws the CPU build away, and it stays the fallback: the build
used at run time (``defaults.build_bin_dir``) is the chosen backend's when that build is
complete, else the CPU's. llama.cpp turns Metal on by itself on macOS, so the CPU build
there says ``GGML_METAL=OFF`` out loud (the flags themselves are ``defaults``'s). With a
GPU build, ``n_gpu_layers`` sets what is offloaded (unset: llama.cpp fits what it can).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

from .. import defaults

CHOICES = ("auto", *defaults.BACKENDS)


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def is_apple_silicon(system: str | None = None, machine: str | None = None) -> bool:
    system = sys.platform if system is None else system
    machine = platform.machine() if machine is None else machine
    return system == "darwin" and machine in ("arm64", "aarch64")


def nvidia_driver() -> bool:
    """An NVIDIA driver that sees at least one GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run(
            [smi, "-L"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def choose(
    wanted: str,
    *,
    nvcc: str | None = None,
    driver: bool | None = None,
    apple_silicon: bool | None = None,
) -> Choice:
    """The backend ``wanted`` stands for here, and why (the probes can be given, for tests)."""
    if wanted not in CHOICES:
        raise ValueError(f"--backend must be one of {', '.join(CHOICES)}, not {wanted!r}")
    if wanted != "auto":
        return Choice(wanted, "asked for")
    nvcc = shutil.which("nvcc") if nvcc is None else nvcc
    if nvcc:
        if nvidia_driver() if driver is None else driver:
            return Choice("cuda", f"nvcc ({nvcc}) and an NVIDIA driver with a GPU found")
        cpu_reason = f"nvcc ({nvcc}) found but no NVIDIA driver lists a GPU"
    else:
        cpu_reason = "no CUDA toolkit (nvcc)"
    if is_apple_silicon() if apple_silicon is None else apple_silicon:
        return Choice("metal", "Apple silicon (llama.cpp's Metal backend)")
    return Choice("cpu", f"{cpu_reason}, not Apple silicon")


def configure_argv(backend: str, source: str, build: str) -> list[str]:
    """The cmake configure command of ``backend``'s build, as set-up runs it."""
    return ["cmake", "-S", source, "-B", build, *defaults.backend_cmake_flags(backend)]


def describe(backend: str) -> str:
    """What the build turns on, in words, for set-up to say."""
    if backend == "cpu":
        return "CPU only (portable x86-64 flags, RPC on, no network" + (
            ", Metal off)" if sys.platform == "darwin" else ")"
        )
    names = {"cuda": "CUDA", "vulkan": "Vulkan", "metal": "Metal"}
    return f"{names[backend]} and the CPU (RPC on, no network); n_gpu_layers sets what is offloaded"
