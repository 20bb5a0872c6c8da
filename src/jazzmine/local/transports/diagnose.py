"""What a failed run's own output may not say: an unusable model file, a worker gone.

Both transports explain their failures with this. llama.cpp's tools log from a thread
(a build from ``jazzmine setup`` flushes it at exit; another build may lose the lines),
so its "failed to load model" lines may be missing or buried in a long stderr; and
llama.cpp's RPC client reports a dead worker only as a generic failure. The model file,
the default one included, is named with what is wrong with it.
"""

from __future__ import annotations

import re

from ..errors import LLMError, LLMIncompleteOutputError, LLMInternalError
from ..gguf.reader import file_problem
from .config import LocalConfig, looks_like_gguf
from .rpc import unreachable

WORKER_PROBE_SECONDS = 1.0
# llama.cpp's reason for refusing a model file (src/llama-model-loader.cpp, llama.cpp's
# llama_model_load: "error loading model: <why>"), e.g. "... model is corrupted or
# incomplete" for a truncated file whose header still reads.
_LOAD_ERROR = re.compile(r"error loading model: ([^\n]+)")


def failure_cause(config: LocalConfig, error: LLMError, llama_binary: bool = True) -> str | None:
    """The cause to put before ``error``'s message, if one is found. ``llama_binary``:
    the binary is llama.cpp's, so it was given the default model when none was named."""
    # A run that exited 0 having written a reply had a usable model and its workers.
    if not isinstance(error, LLMInternalError) or isinstance(error, LLMIncompleteOutputError):
        return None
    causes: list[str] = []
    workers = config.rpc_servers
    if workers:
        gone = unreachable(workers, timeout=WORKER_PROBE_SECONDS)
        if gone:
            causes.append(f"RPC worker {', '.join(gone)} went away during the call")
    path = config.resolved_model(llama_binary)
    if path is not None and looks_like_gguf(path):
        problem = file_problem(path) or _load_error(path, error.stderr)
        if problem is not None:
            causes.append(problem)
    return "; ".join(causes) or None


def _load_error(path: str, stderr: str) -> str | None:
    """llama.cpp's own words on why it refused ``path``, when it printed them."""
    found = _LOAD_ERROR.findall(stderr)
    return f"llama.cpp could not load the model file {path}: {found[-1].strip()}" if found else None
