"""``jazzmine pull``: a GGUF from the Hugging Face Hub, checked before it is used.

Through ``huggingface_hub`` (imported here only): its cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``), its resumable downloads (within one call: a cut connection goes on from
the last whole 10 MiB chunk; 2.x deletes the partial file when the call fails, so a pull
run again starts over) and progress bar, ``HF_TOKEN`` for gated
repositories and ``HF_ENDPOINT`` for a mirror, all read when the pull runs. The
repository's commit and its file list (with each LFS file's sha256) come first; the
files are fetched at that commit; each file's sha256 is then computed and compared with
the Hub's: a mismatch deletes the file and says so. Only then is the pull recorded
(``store``), and only a recorded pull is used by ``LocalLLM(model="hf:...")``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import LLMConnectionError, LLMInternalError, LLMInvalidRequestError
from .choose import Spec, best_model, is_model, parse, quant_of, with_parts
from .store import Pulled, PulledFile, record

_CHUNK = 1 << 20


class PullError(LLMInvalidRequestError):
    """The Hub has no such repository, file or quantisation, or refuses access (gated)."""


class ChecksumError(LLMInternalError):
    """A downloaded file whose sha256 is not the Hub's (it was deleted)."""


def hub_cache_dir() -> Path:
    """huggingface_hub's cache, read now (it reads the environment once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None  # None: huggingface_hub's saved login, if any


def pull(text: str, *, progress: bool = True) -> Pulled:
    """Fetch, check and record ``REPO[:QUANT]`` or ``REPO/FILE.gguf``."""
    spec = parse(text)
    import huggingface_hub as hub
    from huggingface_hub import errors as hub_errors

    api = hub.HfApi(endpoint=_endpoint(), token=_token())
    try:
        revision = api.model_info(spec.repo).sha or "main"
        listing = [
            entry
            for entry in api.list_repo_tree(spec.repo, revision=revision, recursive=True)
            if isinstance(entry, hub.hf_api.RepoFile)
        ]
        chosen = _choose(spec, [entry.path for entry in listing])
        entries = {entry.path: entry for entry in listing}
        files = []
        for path in chosen:
            local = hub.hf_hub_download(
                spec.repo,
                path,
                revision=revision,
                cache_dir=hub_cache_dir(),
                endpoint=_endpoint(),
                token=_token(),
            )
            files.append(_verified(spec, path, local, entries[path]))
    except hub_errors.GatedRepoError:
        raise PullError(
            f"{spec.repo} is gated: accept its terms on the Hub, then set HF_TOKEN to a token "
            "of that account (or `hf auth login`)"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise PullError(
            f"no repository {spec.repo} on {_endpoint()} (or it is private: set HF_TOKEN)"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise PullError(f"{spec.repo} has no revision main") from None
    except hub_errors.EntryNotFoundError:
        raise PullError(f"{spec.repo} has no file {spec.file}") from None
    except hub_errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", 0) or 0
        kind = LLMConnectionError if status >= 500 else LLMInternalError  # the Hub's fault: retry
        raise kind(f"the Hub refused the pull of {spec.name}: {error}; run it again") from None
    except Exception as error:
        if not _network_failure(error):
            raise
        raise LLMConnectionError(
            f"the pull of {spec.name} from {_endpoint()} failed: {error}; run it again"
        ) from None
    pulled = Pulled(spec.name, spec.repo, revision, tuple(files))
    record(pulled)
    return pulled


def _network_failure(error: Exception) -> bool:
    """A dropped connection, a refused one, a timeout: huggingface_hub lets its HTTP
    client's errors (httpx, or httpx2 in 2.x) through."""
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in ("httpx", "httpx2")


def _choose(spec: Spec, paths: list[str]) -> list[str]:
    if spec.file:
        if spec.file not in paths:
            raise PullError(f"{spec.repo} has no file {spec.file}; its GGUFs: {_ggufs(paths)}")
        return with_parts(paths, spec.file)
    first = best_model(paths, spec.quant)
    if first is None:
        what = f"no {spec.quant} quantisation" if spec.quant else "no GGUF model"
        raise PullError(f"{spec.repo} has {what}; its GGUFs: {_ggufs(paths)}")
    return with_parts(paths, first)


def _ggufs(paths: list[str]) -> str:
    quants = sorted({quant_of(p) or p for p in paths if is_model(p)})
    return ", ".join(quants) or "none"


def _verified(spec: Spec, path: str, local: str, entry: Any) -> PulledFile:
    """The file, checked against the Hub's sha256 (LFS) or git blob id; deleted if wrong."""
    blob = os.path.realpath(local)
    size = os.path.getsize(blob)
    if entry.lfs is not None:
        expected, actual = entry.lfs.sha256, _digest(blob, hashlib.sha256())
        kind = "sha256"
    else:  # a small file kept in git: its blob id is sha1("blob SIZE\0" + content)
        expected = entry.blob_id
        actual = _digest(blob, hashlib.sha1(f"blob {size}\0".encode()))
        kind = "git blob id"
    if actual != expected:
        for doomed in (local, blob):
            Path(doomed).unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.repo}/{path}: {kind} {actual} is not the Hub's {expected}; the file was "
            "deleted (a damaged download or a tampered mirror): run "
            f"`jazzmine pull {spec.name}` again"
        )
    return PulledFile(path=path, local=local, size=size, sha256=actual)


def _digest(path: str, hasher: Any) -> str:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return str(hasher.hexdigest())
