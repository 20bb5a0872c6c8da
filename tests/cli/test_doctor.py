"""A model that cannot be used is named, with llama.cpp's own words: a truncated default
model (`doctor --json` once said only "exited with code 1 (stderr was empty)"), and a
`--model` that is no file (`run` once passed on llama.cpp's "--model is required")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jazzmine.local import LLMInternalError, LocalLLM, MessagePart

WAIT_SECONDS = 600.0  # the real binary loads on a busy two-core machine: a bound only
CORRUPT = "model is corrupted or incomplete"  # llama.cpp's words for a truncated file


def jazzmine(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jazzmine.local.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=WAIT_SECONDS,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def truncated(model_path: str, tmp_path: Path) -> str:
    """The real model's first fifth: its header reads, its tensors run past the end."""
    path = tmp_path / "truncated.gguf"
    with open(model_path, "rb") as whole:
        path.write_bytes(whole.read(os.path.getsize(model_path) // 5))
    return str(path)


def test_doctor_names_a_truncated_default_model_with_llama_cpps_words(
    completion_bin: str, truncated: str
) -> None:
    done = jazzmine("doctor", "--json", env={"JAZZMINE_MODEL": truncated})
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["ok"] is False and report["model"] == truncated
    error = report["error"]
    named = f"LLMInternalError: llama.cpp could not load the model file {truncated}: "
    assert error.startswith(named)
    assert CORRUPT in error and "stderr was empty" not in error


def test_a_truncated_model_named_or_default_fails_naming_it(
    completion_bin: str, truncated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for llm in (LocalLLM(model=truncated), _default_model_llm(monkeypatch, truncated)):
        with pytest.raises(LLMInternalError) as caught:
            llm.generate([MessagePart("user", "hi")])
        message = str(caught.value)
        assert message.startswith(f"llama.cpp could not load the model file {truncated}: ")
        assert CORRUPT in message.split(";")[0] and caught.value.exit_code == 1


def _default_model_llm(monkeypatch: pytest.MonkeyPatch, path: str) -> LocalLLM:
    monkeypatch.setenv("JAZZMINE_MODEL", path)
    return LocalLLM()


def test_a_model_option_that_is_no_file_is_named(tmp_path: Path) -> None:
    for command in (["run", "hi"], ["chat"]):
        directory = jazzmine(*command, "--model", str(tmp_path))
        assert directory.returncode == 1 and directory.stdout == ""
        assert directory.stderr == f"jazzmine: --model: the model path {tmp_path} is not a file\n"
    missing = jazzmine("run", "hi", "--model", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert f"the model file {tmp_path / 'nope'} does not exist" in missing.stderr
    assert "--model is required" not in missing.stderr
    report = jazzmine("doctor", "--json", "--model", str(tmp_path))
    assert report.returncode == 1
    assert json.loads(report.stdout)["error"] == f"--model: the model path {tmp_path} is not a file"
