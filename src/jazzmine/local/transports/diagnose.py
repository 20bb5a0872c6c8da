"""What a failed run's own output may not say: an unusable model file, a worker gone.

Both transports explain their failures with this. llama-completion logs from a thread it
does not flush at exit, so its own "failed to load model" lines are lost on some runs;
and llama.cpp's RPC client reports a dead worker only as a generic failure.
"""

from __future__ import annotations

from ..errors import LLMError, LLMInternalError
from ..gguf.reader import file_problem
from .config import LocalConfig, looks_like_gguf
from .rpc import unreachable

WORKER_PROBE_SECONDS = 1.0


def failure_cause(config: LocalConfig, error: LLMError) -> str | None:
    if not isinstance(error, LLMInternalError):
        return None
    causes: list[str] = []
    workers = config.rpc_servers
    if workers:
        gone = unreachable(workers, timeout=WORKER_PROBE_SECONDS)
        if gone:
            causes.append(f"RPC worker {', '.join(gone)} went away during the call")
    model = config.model_path
    if model is not None and looks_like_gguf(model):
        problem = file_problem(model)
        if problem is not None:
            causes.append(problem)
    return "; ".join(causes) or None
