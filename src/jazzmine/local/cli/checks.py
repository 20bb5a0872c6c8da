"""Is jazzmine set up for this command? The checks that send a person to `jazzmine setup`.

What the user named (``--binary``, ``--model`` or their environment variables) is theirs:
a missing one is reported by the library under its own name, never as set-up.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .. import defaults
from ..gguf.reader import file_problem
from ..transports.binary import BinaryKind, check_executable, probe


class NotSetUp(Exception):
    """The build or the default model is missing: the one fix is `jazzmine setup`."""


def require_setup(binary: str | None, model: str | None, *, needs_model: bool = True) -> None:
    """Raise NotSetUp when what the command would use from `jazzmine setup` is missing."""
    built = binary is None and not os.environ.get("JAZZMINE_LLAMA_BIN")
    if built and not defaults.default_binary_path().exists():
        raise NotSetUp(
            "not set up: run `jazzmine setup` first (it builds llama.cpp once; "
            f"there is no build in {defaults.build_bin_dir()})"
        )
    if not needs_model or model is not None or os.environ.get("JAZZMINE_MODEL"):
        return
    chosen = binary or os.environ.get("JAZZMINE_LLAMA_BIN")
    if chosen is not None and not _needs_a_model(chosen):
        return
    path = defaults.default_model_path()
    if not path.exists():
        raise NotSetUp(
            "not set up: run `jazzmine setup` first, or pass --model FILE.gguf "
            f"(there is no default model at {path})"
        )


def _needs_a_model(binary: str) -> bool:
    """Only llama.cpp binaries are given a model; a `-p PROMPT` program brings its own."""
    try:
        return probe(os.path.expanduser(binary)).kind is not BinaryKind.PROMPT_FLAG
    except OSError:
        return False  # a missing binary is the error to report, not the model


def check_binary(binary: str | None) -> None:
    """Fail before the first turn when the binary the user named cannot run."""
    if binary is not None:
        check_executable(os.path.expanduser(binary))


def model_problem(model: str | None) -> str | None:
    """What is wrong with the file ``--model`` names, when it is no file at all.

    ``--model`` is always a path (the library also takes a label, which a missing file
    would silently become, and llama.cpp then said only "--model is required"). A file
    is left to llama.cpp and the call's diagnosis, which name what is wrong inside it.
    """
    if model is None or os.path.isfile(os.path.expanduser(model)):
        return None
    return f"--model: {file_problem(os.path.expanduser(model))}"


def check_model(model: str | None) -> None:
    """Fail before the first turn when ``--model`` names no file."""
    problem = model_problem(model)
    if problem is not None:
        raise FileNotFoundError(problem)


def devices_of(binary: str) -> dict[str, Any]:
    """The backend of the build and the devices llama.cpp sees (``--list-devices``)."""
    found: dict[str, Any] = {"backend": defaults.build_backend(), "devices": None}
    if os.path.dirname(os.path.abspath(binary)) != str(defaults.build_bin_dir()):
        found["backend"] = "unknown (not the embedded build)"
    try:
        done = subprocess.run(
            [binary, "--list-devices"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        found["devices"] = f"not listed: {error}"
        return found
    lines = [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]
    if done.returncode != 0 or not done.stdout.startswith("Available devices"):
        found["devices"] = "not listed (the binary has no --list-devices)"
    else:
        found["devices"] = [] if lines == ["(none)"] else lines  # []: the CPU only
    return found
