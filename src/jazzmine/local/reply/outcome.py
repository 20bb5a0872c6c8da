"""What a finished run comes to: the error it amounts to, its finish reason, its usage.

Read once per run by ``call.run`` from the transport's ``RunOutcome`` and the assembled
reply (``assembler``): the exit status or signal, llama.cpp's refusal of a prompt over the
context, the token counts it reported (else the spec's estimate).
"""

from __future__ import annotations

import re
import signal

from ..errors import LLMError, LLMInternalError, context_length_error
from ..request import RunOutcome
from ..types import LLMUsage
from ..usage import estimate_tokens, usage_from_counts
from .assembler import ReplyAssembler

# llama-completion's refusal of a prompt longer than its context (common/ and
# tools/completion: "prompt is too long (%d tokens, max %d)").
_TOO_LONG = re.compile(r"prompt is too long \((\d+) tokens, max (\d+)\)")


def failure_of(outcome: RunOutcome, binary: str, partial_text: str) -> LLMError | None:
    """The error a finished run amounts to, or None when it succeeded."""
    code = outcome.exit_code
    if outcome.interrupted or code is None or code == 0:
        return None
    too_long = _TOO_LONG.search(outcome.stderr)
    if too_long is not None:
        # llama-completion prints n_ctx - 4 as its "max": the context is 4 more, as
        # llama-server reports it
        context = int(too_long.group(2)) + 4
        return context_length_error(
            int(too_long.group(1)), context, stderr=outcome.stderr, exit_code=code
        )
    if code < 0:
        signum = -code
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        message = f"{binary} was killed by {name}"
        if signum == signal.SIGILL:
            message += (
                " (an illegal instruction: the binary was built for CPU features this machine "
                "lacks; rebuild it for a portable target, e.g. with `jazzmine setup`)"
            )
        message += _stderr_tail(outcome.stderr)
        return LLMInternalError(
            message,
            partial_text=partial_text,
            stderr=outcome.stderr,
            signal_name=name,
            exit_code=code,
        )
    return LLMInternalError(
        f"{binary} exited with code {code}" + _stderr_tail(outcome.stderr),
        partial_text=partial_text,
        stderr=outcome.stderr,
        exit_code=code,
    )


def _stderr_tail(stderr: str) -> str:
    text = stderr.strip()
    return f"; stderr:\n{text}" if text else " (stderr was empty)"


def finish_reason_of(assembler: ReplyAssembler, outcome: RunOutcome, max_tokens: int | None) -> str:
    if assembler.finish_reason in ("stop", "length"):
        return assembler.finish_reason
    if outcome.hit_token_limit is not None:
        return "length" if outcome.hit_token_limit else "stop"
    if (
        max_tokens is not None
        and outcome.completion_tokens is not None
        and outcome.completion_tokens >= max_tokens
    ):
        return "length"
    # A binary that marks the model's own end and did not: a limit ended the reply.
    return "length" if outcome.marks_end_of_text else "stop"


def usage_of(prompt: str, reply_text: str, outcome: RunOutcome) -> tuple[LLMUsage, str]:
    """Exact counts when the model process reported them, else the spec's heuristic."""
    if outcome.prompt_tokens is not None and outcome.completion_tokens is not None:
        return usage_from_counts(outcome.prompt_tokens, outcome.completion_tokens), "reported"
    return usage_from_counts(estimate_tokens(prompt), estimate_tokens(reply_text)), "estimated"
