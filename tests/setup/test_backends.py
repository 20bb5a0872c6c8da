"""`jazzmine setup --backend`: the choice, each backend's cmake flags and cache key, the
CPU build as the fallback, and what `doctor` says. No GPU here: dry runs only."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from jazzmine.local import defaults
from jazzmine.local.cli.checks import devices_of
from jazzmine.local.cli.main import main
from jazzmine.local.setup import backends
from jazzmine.local.setup import run as setup_run


def test_auto_picks_cuda_only_with_nvcc_and_a_driver_then_metal_then_cpu() -> None:
    choose = backends.choose
    assert choose("auto", nvcc="/x/nvcc", driver=True, apple_silicon=False).backend == "cuda"
    no_driver = choose("auto", nvcc="/x/nvcc", driver=False, apple_silicon=False)
    assert no_driver.backend == "cpu" and "no NVIDIA driver" in no_driver.reason
    assert choose("auto", nvcc="", driver=True, apple_silicon=True).backend == "metal"
    assert choose("auto", nvcc="", driver=False, apple_silicon=False).backend == "cpu"
    assert choose("vulkan", nvcc="", driver=False, apple_silicon=False).backend == "vulkan"
    with pytest.raises(ValueError, match="--backend must be one of"):
        choose("rocm")
    assert backends.is_apple_silicon("darwin", "arm64")
    assert not backends.is_apple_silicon("darwin", "x86_64")
    assert not backends.is_apple_silicon("linux", "aarch64")


def test_each_backend_has_its_flags_and_its_own_key_and_the_cpu_key_is_unchanged() -> None:
    # The CPU build's key is what it was before backends existed: no rebuild on upgrade.
    patches = (part for patch in defaults.SOURCE_PATCHES for part in patch)
    recipe = "\n".join((*defaults.CMAKE_FLAGS, *defaults.BUILD_TARGETS, *patches))
    old_key = f"llama.cpp-{defaults.LLAMA_CPP_PYTHON_VERSION}-"
    old_key += hashlib.sha256(recipe.encode()).hexdigest()[:12]
    assert defaults.build_key("cpu", "linux") == old_key
    keys = {defaults.build_key(backend, "linux") for backend in defaults.BACKENDS}
    assert len(keys) == 4 and all(f"-{b}-" in defaults.build_key(b) for b in ("cuda", "metal"))
    flags = defaults.backend_cmake_flags
    assert flags("cuda", "linux")[-1] == "-DGGML_CUDA=ON"
    assert flags("vulkan", "linux")[-1] == "-DGGML_VULKAN=ON"
    assert flags("metal", "darwin")[-2:] == ("-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON")
    # macOS turns Metal on by itself: its CPU build says no, and is another build.
    assert flags("cpu", "darwin")[-1] == "-DGGML_METAL=OFF"
    assert "-DGGML_METAL=OFF" not in flags("cpu", "linux")
    assert defaults.build_key("cpu", "darwin") != old_key


def test_the_chosen_backend_is_used_only_once_built_else_the_cpu_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(defaults.BACKEND_ENV, raising=False)
    root = defaults.cache_root()
    assert defaults.build_backend() == "cpu"
    root.mkdir(parents=True)
    (root / defaults.BACKEND_FILE).write_text("cuda\n")
    assert defaults.chosen_backend() == "cuda" and defaults.build_backend() == "cpu"
    assert defaults.build_bin_dir() == root / defaults.build_key("cpu") / "bin"
    stamp = root / defaults.build_key("cuda") / defaults.BUILD_STAMP
    stamp.parent.mkdir()
    stamp.write_text("")
    assert defaults.build_bin_dir() == root / defaults.build_key("cuda") / "bin"
    monkeypatch.setenv(defaults.BACKEND_ENV, "cpu")
    assert defaults.build_backend() == "cpu"


def test_a_gpu_build_that_fails_leaves_the_cpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def ensure_build(report: Callable[[str], None], backend: str = "cpu") -> bool:
        asked.append(backend)
        if backend != "cpu":
            raise RuntimeError("nvcc: no such GPU architecture")
        return False

    monkeypatch.setattr(setup_run, "ensure_build", ensure_build)
    lines: list[str] = []
    assert setup_run._build_with_fallback("cuda", lines.append) == (False, "cpu")
    assert asked == ["cuda", "cpu"] and "the cuda build failed, using the CPU build" in lines[0]


@pytest.mark.parametrize("backend", ["cpu", "cuda", "vulkan", "metal"])
def test_the_dry_run_prints_the_exact_cmake_command_and_builds_nothing(
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["setup", "--backend", backend, "--dry-run"]) == 0
    out = capsys.readouterr().out
    configure = " ".join(["cmake -S <source> -B <build>", *defaults.backend_cmake_flags(backend)])
    assert f"configure: {configure}\n" in out
    assert f"backend:   {backend} (asked for)" in out
    assert str(tmp_path / "jazzmine" / defaults.build_key(backend)) in out
    assert not any(tmp_path.iterdir())  # nothing built, nothing written


def test_doctor_names_the_backend_and_the_devices(make_script: Callable[..., str]) -> None:
    gpu = make_script(
        "llama-completion",
        """
        print("Available devices:")
        print("  CUDA0: NVIDIA L4 (22478 MiB, 22180 MiB free)")
        """,
    )
    found = devices_of(gpu)
    assert found["devices"] == ["CUDA0: NVIDIA L4 (22478 MiB, 22180 MiB free)"]
    assert found["backend"].startswith("unknown")  # not the embedded build
    cpu_only = make_script("cpu", 'print("Available devices:")\nprint("  (none)")')
    assert devices_of(cpu_only)["devices"] == []
    old = make_script("old", "import sys; sys.exit(1)")
    assert devices_of(old)["devices"].startswith("not listed")


def test_doctor_on_the_embedded_build(completion_bin: str) -> None:
    found = devices_of(completion_bin)
    assert found == {"backend": "cpu", "devices": []}  # this machine has no GPU
