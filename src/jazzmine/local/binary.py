"""Which kind of binary a path is, learned once from what it says it accepts.

A binary is probed with ``--help`` the first time it is used; the answer is remembered
per file (path, size, modification time), so no call pays for it twice.
"""

from __future__ import annotations

import enum
import os
import re
import stat
import subprocess
import threading
from dataclasses import dataclass

PROBE_TIMEOUT_SECONDS = 15.0


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
_probe_cache: dict[tuple[str, int, int, int], BinaryInfo] = {}
_probe_lock = threading.Lock()


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
    help_text = _run_help(resolved)
    found = BinaryInfo(
        path=path,
        kind=classify(help_text),
        flags=frozenset(_FLAG_PATTERN.findall(help_text)),
    )
    with _probe_lock:
        _probe_cache[key] = found
    return found


def _run_help(path: str) -> str:
    return _ask(path, "--help")


def _ask(path: str, flag: str) -> str:
    """All the binary prints for ``flag``. One that does not understand the flag may run,
    or hang: stdin is closed and the run is bounded; what it printed is all we learn."""
    try:
        done = subprocess.run(
            [path, flag],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as timed_out:
        return _as_text(timed_out.stdout) + _as_text(timed_out.stderr)
    except OSError:
        return ""
    return _as_text(done.stdout) + _as_text(done.stderr)


def _as_text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def version_of(path: str) -> str:
    """What the binary says of its version (llama.cpp prints it on stderr)."""
    text = _ask(path, "--version").strip()
    return text.splitlines()[0] if text else "unknown"
