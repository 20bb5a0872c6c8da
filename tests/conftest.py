"""Shared fixtures: the real llama.cpp build and model (set up once), and fake binaries."""

from __future__ import annotations

import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# a test that ran into its timeout fails even when the code under test swallowed it
from helpers.timeout_guard import (  # noqa: F401
    pytest_runtest_makereport,
    pytest_timeout_set_timer,
)

from jazzmine.local import MessagePart
from jazzmine.local.setup.run import SetupResult, run_setup

# Fixtures that need the llama.cpp build or a model: a test using any of them is marked
# `real`, so `pytest -m "not real"` runs the rest in seconds on a machine with nothing built.
REAL_FIXTURES = frozenset(
    {"setup_result", "real_build", "completion_bin", "cli_bin", "model_path", "base_model_path"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def setup_result() -> SetupResult:
    """What `jazzmine setup` installed (built on first use, then cached)."""
    return run_setup(lambda line: None)


@pytest.fixture(scope="session")
def real_build(setup_result: SetupResult) -> tuple[Path, Path]:
    """The embedded llama.cpp binaries and the default model (SmolLM2-135M-Instruct)."""
    return setup_result.bin_dir, setup_result.model_path


@pytest.fixture(scope="session")
def completion_bin(real_build: tuple[Path, Path]) -> str:
    return str(real_build[0] / "llama-completion")


@pytest.fixture(scope="session")
def cli_bin(real_build: tuple[Path, Path]) -> str:
    return str(real_build[0] / "llama-cli")


@pytest.fixture(scope="session")
def model_path(real_build: tuple[Path, Path]) -> str:
    """The default model: instruction-tuned, with a ChatML template in its GGUF."""
    return str(real_build[1])


@pytest.fixture(scope="session")
def base_model_path(setup_result: SetupResult) -> str:
    """Gemma 3 270M, a base model with no chat template: LocalLLM gives it the spec's
    flattened prompt, which it continues as text (and goes on to write the next turn)."""
    return str(setup_result.base_model_path)


@pytest.fixture
def make_script(tmp_path: Path) -> Callable[..., str]:
    """Write an executable script; Python ones run under this interpreter."""

    def make(name: str, body: str, *, python: bool = True) -> str:
        path = tmp_path / name
        header = f"#!{sys.executable}\n" if python else "#!/bin/sh\n"
        path.write_text(header + textwrap.dedent(body).lstrip("\n"))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)

    return make


@pytest.fixture
def user_says() -> Callable[[str], list[MessagePart]]:
    return lambda text: [MessagePart("user", text)]
