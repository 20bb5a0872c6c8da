"""The spec's transport: one child process per call.

Builds the call's argv (``argv``), runs one ``ChildProcess`` and hands its raw stdout to
reply assembly; a reply complete before the child is ends the child with the signal that
still makes llama.cpp print its counts.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .. import defaults
from ..errors import (
    DeadlineExceeded,
    LLMConnectionError,
    LLMError,
    LLMIncompleteOutputError,
    LLMInternalError,
)
from ..process.child import ChildProcess, ExitStatus
from ..request import GenerationRequest, RunOutcome, parse_llama_counts
from .argv import CLOSING_STATISTICS, Launch, ModelOptions, build_launch
from .binary import BinaryKind, check_executable, probe
from .config import LocalConfig
from .diagnose import failure_cause
from .rpc import CONNECT_TIMEOUT_SECONDS, unreachable

STOP_WAIT_SECONDS = 2.0


def _stop_deadline(deadline: float | None) -> float:
    # A child asked to stop gets a short while to print its statistics, then is killed.
    soon = time.monotonic() + STOP_WAIT_SECONDS
    return soon if deadline is None else min(deadline, soon)


def exit_outcome(plan: Launch, status: ExitStatus, interrupted: bool = False) -> RunOutcome:
    outcome = RunOutcome(
        stderr=status.stderr,
        exit_code=status.returncode,
        interrupted=interrupted,
        marks_end_of_text=plan.shape.marks_every_end,
    )
    if plan.reads_llama_stats:
        outcome.prompt_tokens, outcome.completion_tokens = parse_llama_counts(status.stderr)
    return outcome


def check_finished(plan: Launch, status: ExitStatus) -> None:
    """Raise LLMIncompleteOutputError for a child that exited 0 without what it prints at
    its end: it did not finish writing (llama.cpp's unflushed logger loses the tail of the
    reply and the statistics together), so the reply cannot pass for a whole one.

    Only reached when the reply was not already complete: for llama-cli a complete reply
    is one whose trailer came, so reaching here at all is the proof missing.
    """
    name = os.path.basename(plan.argv[0])
    if plan.closing_proof == "statistics" and not CLOSING_STATISTICS.search(status.stderr):
        missing = "its closing statistics"
    elif plan.closing_proof == "trailer":
        missing = "its closing line (Exiting...)"
    else:
        return
    raise LLMIncompleteOutputError(
        f"{name} exited 0 without {missing}: its output was cut short",
        stderr=status.stderr,
        exit_code=0,
    )


class PerCallSession:
    """One child for one call."""

    def __init__(self, plan: Launch, details: dict[str, Any], live: LiveSessions) -> None:
        self.plan = plan
        self.shape = plan.shape
        self.details = details
        self.live = live
        # dies_with_parent: a SIGKILLed caller must not leave a model process running.
        self._child = ChildProcess(
            plan.argv, env=plan.env, pass_fds=plan.pass_fds, dies_with_parent=True
        )
        self._ended_by: str | None = None

    def __enter__(self) -> PerCallSession:
        try:
            self._child.start()
            self.plan.feed()  # a pipe's contents are written while the child reads them
        finally:
            # The child holds its own copy of the prompt file now (or failed to start).
            self.plan.release()
        self.live.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.live.discard(self)
        self._child.stop()
        self.plan.release()

    def interrupt(self, reason: str) -> None:
        """From any thread: end the child now; its output is no longer wanted."""
        self._ended_by = reason
        self._child.interrupt(signal.SIGKILL)

    def chunks(self, deadline: float | None) -> Iterator[bytes]:
        return self._child.stdout_chunks(deadline)

    def finish(self, reply_complete: bool, deadline: float | None) -> RunOutcome:
        if not reply_complete:
            status = self._child.wait(deadline)
            if self._ended_by is not None and status.returncode != 0:
                raise LLMInternalError(
                    f"{self._ended_by} ended this call; its model process was stopped",
                    stderr=status.stderr,
                    exit_code=status.returncode,
                )
            if status.returncode == 0:
                check_finished(self.plan, status)
            return exit_outcome(self.plan, status)
        self._child.interrupt(self.plan.stop_signal)
        try:
            status = self._child.wait(_stop_deadline(deadline))
        except DeadlineExceeded:
            self._child.stop()
            status = ExitStatus(-signal.SIGKILL, self._child.stderr_text())
        return exit_outcome(self.plan, status, interrupted=True)

    def stderr_text(self) -> str:
        return self._child.stderr_text()


class LiveSessions:
    """The calls of one transport whose children are running, so close() can end them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: set[PerCallSession] = set()

    def add(self, session: PerCallSession) -> None:
        with self._lock:
            self._sessions.add(session)

    def discard(self, session: PerCallSession) -> None:
        with self._lock:
            self._sessions.discard(session)

    def abort_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.interrupt("LocalLLM.close()")


class PerCallTransport:
    """The spec's way: every call starts, reads and reaps its own child."""

    name = "per-call"

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.live = LiveSessions()

    def launch(self, request: GenerationRequest) -> tuple[Launch, dict[str, Any]]:
        info = probe(self.config.binary_path)
        # Fail fast on an unreachable worker: llama.cpp's own connect has no timeout.
        check_workers(self.config.rpc_servers)
        model_path = self.config.resolved_model(info.kind is not BinaryKind.PROMPT_FLAG)
        options = ModelOptions(
            binary_path=self.config.binary_path,
            model_path=model_path,
            n_ctx=(
                self.config.n_ctx
                if info.kind is BinaryKind.PROMPT_FLAG
                else self.config.context_for_call(request, model_path)
            ),
            threads=self.config.threads,
            offload_args=tuple(self.config.offload_args()),
            extra_args=self.config.extra_args,
            env=self.config.env,
            argv_template=self.config.argv_template,
        )
        details = {
            "endpoint": "subprocess",
            "binary": self.config.binary_path,
            "binary_kind": info.kind.value,
            "model_path": model_path,
        }
        return build_launch(options, info, request), details

    def open(self, request: GenerationRequest, deadline: float | None) -> PerCallSession:
        plan, details = self.launch(request)
        return PerCallSession(plan, details, self.live)

    def runs_llama_cpp(self) -> bool:
        if self.config.argv_template is not None:
            return False
        return probe(self.config.binary_path).kind is not BinaryKind.PROMPT_FLAG

    def explain(self, error: LLMError) -> str | None:
        # The default model was given to a llama.cpp binary only.
        try:
            llama_binary = self.runs_llama_cpp()
        except OSError:
            llama_binary = False
        return failure_cause(self.config, error, llama_binary)

    def health(self) -> bool:
        try:
            check_executable(self.config.binary_path)
        except OSError:
            return False
        return model_present(self.config)

    def close(self) -> None:
        """Nothing is pooled; calls still running are ended (each reaps its own child)."""
        self.live.abort_all()


def check_workers(addresses: Sequence[str]) -> None:
    if not addresses:
        return
    dead = unreachable(addresses)
    if dead:
        raise LLMConnectionError(
            f"RPC worker {', '.join(dead)} did not accept a connection within "
            f"{CONNECT_TIMEOUT_SECONDS:g} s (is `jazzmine worker` running there?)"
        )


def model_present(config: LocalConfig) -> bool:
    if config.model_path is not None:
        return os.path.exists(config.model_path)
    if config.wants_default_model:
        return defaults.default_model_path().exists()
    return True
