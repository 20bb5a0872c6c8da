"""What is on disk: set-up's models, pulled ones (checked, usable as ``hf:`` names) and
the Hugging Face cache's other GGUFs (not checked by jazzmine: pull them to use them),
each described from its GGUF header; and removing one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import LLMInvalidRequestError
from .choose import is_model
from .describe import describe
from .hub import hub_cache_dir
from .store import PREFIX, forget, pulled_models


def _entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for path in sorted((defaults.cache_root() / "models").glob("*.gguf")):
        entries.append({"name": path.name, "source": "setup", "paths": [str(path)]})
    taken: set[str] = set()
    for pulled in pulled_models():
        paths = [f.local for f in pulled.files]
        taken.update(os.path.realpath(p) for p in paths)
        entries.append({"name": PREFIX + pulled.name, "source": "pulled", "paths": paths})
    for repo_dir in sorted(hub_cache_dir().glob("models--*")):
        repo = repo_dir.name[len("models--") :].replace("--", "/", 1)
        for path in sorted(repo_dir.glob("snapshots/*/**/*.gguf")):
            relative = "/".join(path.relative_to(repo_dir).parts[2:])
            if is_model(relative) and os.path.realpath(path) not in taken and path.exists():
                name = f"{repo}/{relative}"
                entries.append({"name": name, "source": "hub cache", "paths": [str(path)]})
    return entries


def installed() -> list[dict[str, Any]]:
    """Every model on disk: name, source, path, size (all parts), and its header's facts."""
    found = []
    for entry in _entries():
        paths = entry.pop("paths")
        existing = [p for p in paths if os.path.exists(p)]
        size = sum(os.path.getsize(p) for p in existing)
        found.append(
            {**entry, "path": paths[0], "size": size, "complete": len(existing) == len(paths)}
        )
        found[-1].update(describe(paths[0]) if existing else {})
    return found


def remove(name: str) -> list[str]:
    """Delete a model's files (a Hub cache blob with its link) and its record; the paths."""
    for entry in _entries():
        if entry["name"] == name or (
            entry["source"] == "pulled" and entry["name"] == PREFIX + name
        ):
            removed = []
            for path in entry["paths"]:
                for doomed in dict.fromkeys([os.path.realpath(path), path]):
                    if os.path.lexists(doomed):
                        Path(doomed).unlink()
                        removed.append(doomed)
            if entry["source"] == "pulled":
                pulled = next(p for p in pulled_models() if PREFIX + p.name == entry["name"])
                forget(pulled)
            return removed
    raise LLMInvalidRequestError(f"no model named {name!r} on disk (see `jazzmine models`)")
