"""Where the default binary and model are, and the environment variables that override them.

Without arguments LocalLLM runs the embedded llama-completion on SmolLM2-135M-Instruct
(both put in the user cache by ``jazzmine setup``); ``JAZZMINE_LLAMA_BIN`` and
``JAZZMINE_MODEL`` name others. The path rules run on an empty cache; the rest on the
real build.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.real_calls import COLOURS, QUESTION

from jazzmine.local import LocalLLM, defaults


# ---------- the environment's overrides ----------
def test_jazzmine_llama_bin_expands_home_and_finds_bare_names_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", "~/llama/llama-cli")
    assert defaults.default_binary_path() == tmp_path / "llama" / "llama-cli"

    tools = tmp_path / "tools"
    tools.mkdir()
    program = tools / "my-llama"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}{os.pathsep}{tools}")
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", "my-llama")
    assert defaults.default_binary_path() == program
    # Not on PATH: left as written, so the error names what the user gave.
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", "no-such-llama")
    assert str(defaults.default_binary_path()) == "no-such-llama"
    # With a slash it is a path, never searched for.
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", "elsewhere/my-llama")
    assert str(defaults.default_binary_path()) == "elsewhere/my-llama"

    monkeypatch.delenv("JAZZMINE_LLAMA_BIN")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert defaults.default_binary_path() == defaults.build_bin_dir() / "llama-completion"
    assert defaults.build_bin_dir().is_relative_to(tmp_path / "cache")


def test_jazzmine_model_overrides_the_default_model_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("JAZZMINE_MODEL", raising=False)
    models = tmp_path / "cache" / "jazzmine" / "models"
    assert defaults.default_model_path() == models / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert defaults.ensure_default_model() == defaults.default_model_path()
    assert not models.exists()  # run time never fetches: only set-up does
    monkeypatch.setenv("JAZZMINE_MODEL", "~/weights/m.gguf")
    assert defaults.default_model_path() == tmp_path / "weights" / "m.gguf"
    assert defaults.base_model_path() == models / "gemma-3-270m-q4_k_m.gguf"


# ---------- on the real build ----------
def test_default_binary_and_model(real_build: tuple[Path, Path]) -> None:
    llm = LocalLLM(max_tokens=4)
    assert llm.binary_path == str(real_build[0] / "llama-completion")
    response = llm.generate(QUESTION)
    assert response.usage.completion_tokens == 4
    assert llm.model_path == str(real_build[1])
    assert real_build[1].name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_default_model_answers_the_question(real_build: tuple[Path, Path]) -> None:
    # An instruction-tuned model in its own chat format answers; a base model given the
    # same question as text tends to go on with more questions. Both modes, greedy.
    replies = []
    for keep_alive in (None, 60):
        llm = LocalLLM(keep_alive=keep_alive, max_tokens=60, seed=1)
        try:
            replies.append(llm.generate(COLOURS))
        finally:
            llm.close()
    for reply in replies:
        assert reply.api_metrics is not None
        assert reply.api_metrics["prompt_format"] == "template"
        text = reply.text.lower()
        assert sum(colour in text for colour in ("red", "blue", "yellow", "green")) >= 2, text
        assert "?" not in text.split(".")[0], text  # it does not open with a question
        assert "<|im_" not in text and "user" not in text
    assert replies[0].api_metrics["transport"] != replies[1].api_metrics["transport"]  # type: ignore[index]
    assert replies[0].text == replies[1].text


def test_environment_overrides_the_defaults(
    monkeypatch: pytest.MonkeyPatch, cli_bin: str, model_path: str, tmp_path: Path
) -> None:
    copy = tmp_path / "model-copy.gguf"
    copy.symlink_to(model_path)
    monkeypatch.setenv("JAZZMINE_LLAMA_BIN", cli_bin)
    monkeypatch.setenv("JAZZMINE_MODEL", str(copy))
    llm = LocalLLM(max_tokens=3)
    assert llm.binary_path == cli_bin
    response = llm.generate(QUESTION)
    assert llm.model_path == str(copy)
    assert response.api_metrics is not None and response.api_metrics["binary_kind"] == "llama-cli"


def test_binary_path_is_found_like_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "my-llama"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LocalLLM(binary_path="my-llama", model="m").binary_path == str(program)
    assert LocalLLM(binary_path="~/my-llama", model="m").binary_path == str(program)
    assert LocalLLM(binary_path="no-such-llama", model="m").binary_path == "no-such-llama"
