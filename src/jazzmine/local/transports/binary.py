"""Which kind of binary a path is, learned once from what it says it accepts.

A binary is probed with ``--help`` the first time it is used; the answer is remembered
per file (path, size, modification time), so no call pays for it twice. Concurrent first
calls share one probe: the others wait for its answer instead of each starting a child,
so a probe never adds processes beyond ``max_concurrency``.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import stat
import threading
import time
from dataclasses import dataclass

from .. import system
from ..errors import DeadlineExceeded
from ..process.child import ChildProcess

PROBE_TIMEOUT_SECONDS = 15.0
# llama.cpp's --help is about 30 KB; a binary that prints forever is cut off here.
PROBE_OUTPUT_LIMIT = 1024 * 1024


class BinaryKind(str, enum.Enum):
    # llama.cpp's plain completion tool (llama-completion, or llama-cli before its chat UI).
    LLAMA_COMPLETION = "llama-completion"
    # Current llama-cli: a chat UI over an embedded server.
    LLAMA_CHAT_CLI = "llama-cli"
    # Anything else: the spec's convention, the prompt after ``-p``.
    PROMPT_FLAG = "prompt-flag"


@dataclass(frozen=True)
class BinaryInfo:
    path: str
    kind: BinaryKind
    flags: frozenset[str]

    def accepts(self, flag: str) -> bool:
        return flag in self.flags


_FLAG_PATTERN = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_ProbeKey = tuple[str, int, int, int]
_probe_cache: dict[_ProbeKey, BinaryInfo] = {}
_probe_lock = threading.Lock()
# One lock per file being probed: the first caller probes, the rest wait for its answer.
_probing: dict[_ProbeKey, threading.Lock] = {}


def _after_fork_in_child() -> None:
    # A probe running in another thread of the parent is not running here: its lock
    # would stay held forever in the child.
    global _probe_lock
    _probe_lock = threading.Lock()
    _probing.clear()


system.at_fork_in_child(_after_fork_in_child)


def check_executable(path: str) -> None:
    """Raise the spec's errors: FileNotFoundError or PermissionError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model binary not found: {path}") from None
    if stat.S_ISDIR(info.st_mode) or not os.access(path, os.X_OK):
        raise PermissionError(f"model binary is not an executable file: {path}")


def classify(help_text: str) -> BinaryKind:
    flags = set(_FLAG_PATTERN.findall(help_text))
    if {"--no-conversation", "--no-display-prompt", "--file"} <= flags:
        return BinaryKind.LLAMA_COMPLETION
    if {"--single-turn", "--chat-template", "--file"} <= flags:
        return BinaryKind.LLAMA_CHAT_CLI
    return BinaryKind.PROMPT_FLAG


def probe(path: str) -> BinaryInfo:
    """The binary's kind and accepted flags; cached per file version."""
    check_executable(path)
    resolved = os.path.realpath(path)
    info = os.stat(resolved)
    key = (resolved, info.st_ino, info.st_size, info.st_mtime_ns)
    with _probe_lock:
        cached = _probe_cache.get(key)
        if cached is not None:
            return cached
        one_probe = _probing.setdefault(key, threading.Lock())
    with one_probe:
        with _probe_lock:
            cached = _probe_cache.get(key)
        if cached is not None:  # probed while this caller waited
            return cached
        help_text = _run_help(resolved)
        found = BinaryInfo(
            path=path,
            kind=classify(help_text),
            flags=frozenset(_FLAG_PATTERN.findall(help_text)),
        )
        with _probe_lock:
            _probe_cache[key] = found
            _probing.pop(key, None)
    return found


def _run_help(path: str) -> str:
    return _ask(path, "--help")


def _ask(path: str, flag: str) -> str:
    """What the binary prints for ``flag``, bounded in time and size. One that does not
    understand the flag may run, hang or print forever: stdin is closed, at most
    PROBE_OUTPUT_LIMIT bytes are kept, and the whole group is stopped after
    PROBE_TIMEOUT_SECONDS; what it printed by then is all we learn."""
    output = bytearray()
    deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
    try:
        with ChildProcess([path, flag]) as child, contextlib.suppress(DeadlineExceeded):
            for chunk in child.stdout_chunks(deadline):
                output += chunk
                if len(output) >= PROBE_OUTPUT_LIMIT:
                    break
            else:
                child.wait(deadline)  # its stderr, whole
        stderr = child.stderr_text()
    except OSError:
        return ""
    return (
        output[:PROBE_OUTPUT_LIMIT].decode("utf-8", errors="replace") + stderr[:PROBE_OUTPUT_LIMIT]
    )


@functools.cache
def gpu_devices(path: str) -> tuple[str, ...]:
    """The GPU devices the build offers (``--list-devices``; a CPU build lists none)."""
    if "--list-devices" not in probe(path).flags:
        return ()
    text = _ask(path, "--list-devices")
    lines = (
        text.split("Available devices:", 1)[1].splitlines() if "Available devices:" in text else []
    )
    return tuple(line.strip() for line in lines if line.strip() and line.strip() != "(none)")


def version_of(path: str) -> str:
    """What the binary says of its version (llama.cpp prints it on stderr)."""
    text = _ask(path, "--version").strip()
    return text.splitlines()[0] if text else "unknown"
