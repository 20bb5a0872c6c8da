"""Pulled models on disk, found without the network.

``jazzmine pull`` records each verified pull as a small manifest under the jazzmine
cache (``pulled/``): the canonical name, the repository's commit, and for each file its
path in the Hub cache, size and sha256. ``LocalLLM(model="hf:REPO:QUANT")`` reads that
manifest and nothing else: a run never reaches the network, and a model that was not
pulled (or whose file has gone) is a ``ModelNotPulledError`` that gives the command.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import LLMInvalidRequestError
from .choose import Spec, parse

PREFIX = "hf:"


class ModelNotPulledError(LLMInvalidRequestError):
    """An ``hf:`` model that is not on disk: ``jazzmine pull`` fetches it (runs never do)."""


@dataclass(frozen=True)
class PulledFile:
    path: str  # in the repository
    local: str  # in the Hub cache
    size: int
    sha256: str


@dataclass(frozen=True)
class Pulled:
    name: str
    repo: str
    revision: str
    files: tuple[PulledFile, ...]

    @property
    def model_path(self) -> str:
        """What llama.cpp is given: the file, or a split GGUF's first part."""
        return self.files[0].local


def manifests_dir() -> Path:
    return defaults.cache_root() / "pulled"


def _manifest_path(name: str) -> Path:
    return manifests_dir() / (name.replace("/", "--").replace(":", "@") + ".json")


def record(pulled: Pulled) -> Path:
    """Write the manifest (atomically: a reader never sees half of one)."""
    path = _manifest_path(pulled.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "name": pulled.name,
        "repo": pulled.repo,
        "revision": pulled.revision,
        "files": [vars(f) for f in pulled.files],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(body, indent=1))
    os.replace(temporary, path)
    return path


def _load(path: Path) -> Pulled | None:
    try:
        body: dict[str, Any] = json.loads(path.read_text())
        files = tuple(PulledFile(**item) for item in body["files"])
        return Pulled(body["name"], body["repo"], body["revision"], files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pulled_models() -> list[Pulled]:
    found = []
    for path in sorted(manifests_dir().glob("*.json")):
        pulled = _load(path)
        if pulled is not None:
            found.append(pulled)
    return found


def find(name: str) -> Pulled | None:
    spec = parse(name)
    return _load(_manifest_path(spec.name))


def forget(pulled: Pulled) -> None:
    _manifest_path(pulled.name).unlink(missing_ok=True)


def resolve(model: str) -> str:
    """The local GGUF for ``hf:REPO[:QUANT]`` or ``hf:REPO/FILE.gguf``, without the network."""
    spec: Spec = parse(model)
    pulled = _load(_manifest_path(spec.name))
    command = f"jazzmine pull {spec.name}"
    if pulled is None:
        raise ModelNotPulledError(
            f"{model} is not on this machine; runs never download: fetch it once with `{command}`"
        )
    missing = [f.local for f in pulled.files if not os.path.isfile(f.local)]
    if missing:
        raise ModelNotPulledError(
            f"{model} was pulled but {missing[0]} is gone; fetch it again with `{command}`"
        )
    return pulled.model_path
