"""LocalConfig, a LocalLLM's load-time settings: what counts as a GGUF file to load."""

from __future__ import annotations

from pathlib import Path

import pytest

from jazzmine.local import LocalLLM
from jazzmine.local.transports.config import looks_like_gguf


def build(model: str) -> LocalLLM:
    # prompt_format="flat": no probe of the (missing) binary, no GGUF read.
    return LocalLLM(binary_path="/nonexistent/llama-completion", model=model, prompt_format="flat")


def test_a_gguf_file_is_known_by_its_magic_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"GGUF" + bytes(20))
    text = tmp_path / "notes.txt"
    text.write_text("GGUX, not a model")
    short = tmp_path / "short"
    short.write_bytes(b"GG")
    assert looks_like_gguf(str(weights))
    assert not looks_like_gguf(str(text)) and not looks_like_gguf(str(short))
    assert not looks_like_gguf(str(tmp_path))  # a directory
    assert looks_like_gguf(str(tmp_path / "missing.gguf"))  # by its name: llama.cpp explains
    assert looks_like_gguf(str(tmp_path / "MISSING.GGUF"))
    assert not looks_like_gguf(str(tmp_path / "missing.bin"))
    assert not looks_like_gguf("gemma-3") and not looks_like_gguf(None)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert looks_like_gguf("~/weights.bin")

    llm = build(model=str(weights))
    assert llm.config.model_path == str(weights) and llm.model_path == str(weights)
    assert build(model=str(text)).config.model_path is None  # a label
    assert build(model="~/weights.bin").config.model_path == str(weights)


GPU_BUILD = """
import sys
if "--help" in sys.argv:
    print("usage: llama-completion [options]\\n  -ngl, --gpu-layers N\\n  -fit, --fit [on|off]")
    print("  --list-devices   print a list of available devices and exit")
elif "--list-devices" in sys.argv:
    print("Available devices:\\n  {devices}")
"""


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ("CUDA0: NVIDIA L4 (22478 MiB, 22000 MiB free)", ["-ngl", "auto", "--fit", "on"]),
        ("(none)", []),
    ],
)
def test_auto_gpu_layers_fit_on_a_gpu_build_and_do_nothing_on_cpu(
    make_script: object, devices: str, expected: list[str]
) -> None:
    binary = make_script(f"llama-completion-{len(expected)}", GPU_BUILD.format(devices=devices))  # type: ignore[operator]
    llm = LocalLLM(binary_path=binary, model="m.gguf", n_gpu_layers="auto", prompt_format="flat")
    assert llm.config.offload_args() == expected
    assert LocalLLM(binary_path=binary, n_gpu_layers=3).config.offload_args() == ["-ngl", "3"]
