"""What ``jazzmine pull`` was asked for, and which files of a repository that means.

``REPO[:QUANT]`` picks a file as llama.cpp's ``-hf`` does (``find_best_model`` in its
``common/download.cpp``, at the pinned version): with a quantisation, the first GGUF of
the repository's listing whose path holds ``QUANT`` followed by ``.`` or ``-`` (any
case); without one, the first that holds ``Q4_K_M``, else ``Q8_0``, else the first GGUF.
Projectors and side models (``mmproj``, ``imatrix``, ``mtp-``, ``eagle3-``, ``dflash-``,
``dspark-``) are never the model, and of a split GGUF only its first part is matched;
the other parts (``-0000K-of-0000N``, same prefix) come with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LLMInvalidRequestError

DEFAULT_TAGS = ("Q4_K_M", "Q8_0")
NOT_A_MODEL = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelSpecError(LLMInvalidRequestError):
    """A model name that is not ``REPO[:QUANT]`` or ``REPO/FILE.gguf``."""


@dataclass(frozen=True)
class Spec:
    """``REPO``, ``REPO:QUANT`` or ``REPO/FILE.gguf``."""

    repo: str
    quant: str = ""  # upper case; "" for llama.cpp's default choice
    file: str = ""  # a path in the repository, when one was named

    @property
    def name(self) -> str:
        """The canonical name: ``hf:`` plus this is what LocalLLM takes."""
        if self.file:
            return f"{self.repo}/{self.file}"
        return f"{self.repo}:{self.quant}" if self.quant else self.repo


def parse(text: str) -> Spec:
    """``owner/name[:QUANT]`` or ``owner/name/path/to/file.gguf`` (an ``hf:`` prefix is allowed)."""
    body = text[3:] if text.startswith("hf:") else text
    if body.lower().endswith(".gguf"):
        parts = body.split("/")
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])
        if not file or not _REPO.match(repo):
            raise ModelSpecError(f"{text!r} is not REPO/FILE.gguf (owner/name/file.gguf)")
        return Spec(repo, file=file)
    repo, _, quant = body.partition(":")
    if not _REPO.match(repo) or ":" in quant or (_ and not quant):
        raise ModelSpecError(f"{text!r} is not REPO[:QUANT] (owner/name, e.g. owner/name:Q4_K_M)")
    return Spec(repo, quant=quant.upper())


@dataclass(frozen=True)
class Split:
    prefix: str
    tag: str
    index: int
    count: int


def split_info(path: str) -> Split | None:
    """llama.cpp's ``get_gguf_split_info``: the prefix, quant tag and part numbers."""
    if not path.endswith(".gguf"):
        return None
    prefix, index, count = path[: -len(".gguf")], 1, 1
    match = _SPLIT.match(prefix)
    if match:
        prefix, index, count = match[1], int(match[2]), int(match[3])
    tag = _TAG.search(prefix)
    return Split(prefix, tag[1].upper() if tag else "", index, count)


def is_model(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".gguf") and not any(word in name for word in NOT_A_MODEL)


def _first_part(path: str) -> bool:
    info = split_info(path)
    return info is not None and (info.count <= 1 or info.index == 1)


def best_model(paths: list[str], quant: str) -> str | None:
    """The file ``REPO:QUANT`` means in ``paths`` (the repository's listing order)."""
    for tag in [quant] if quant else list(DEFAULT_TAGS):
        pattern = re.compile(re.escape(tag) + r"[.-]", re.IGNORECASE)
        for path in paths:
            if is_model(path) and pattern.search(path) and _first_part(path):
                return path
    if not quant:
        return next((p for p in paths if is_model(p) and _first_part(p)), None)
    return None


def with_parts(paths: list[str], first: str) -> list[str]:
    """``first`` and, for a split GGUF, every part of it, in order."""
    info = split_info(first)
    if info is None or info.count <= 1:
        return [first]
    parts = []
    for path in paths:
        other = split_info(path)
        if other and other.count == info.count and other.prefix == info.prefix:
            parts.append((other.index, path))
    return [path for _, path in sorted(parts)]


def quant_of(path: str) -> str:
    info = split_info(path)
    return info.tag if info else ""
