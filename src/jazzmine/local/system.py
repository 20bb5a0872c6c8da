"""Which implementation of the Linux-only guarantees this system gets, chosen at run time.

Three promises rest on Linux's own calls: the prompt never touches disk (``memfd``, read
by the child as ``/proc/self/fd/N``), a child dies with its parent (``PR_SET_PDEATHSIG``),
and warm mode's socket path fits Linux's 108 bytes. Each has a portable twin that every
POSIX system has: a pipe the parent writes while the child reads it as ``/dev/fd/N``
(``transports.private_file``); a launcher that
keeps a lifeline pipe and kills the child's process group when it reads EOF
(``process.launcher``); and warm mode's socket in a short private directory, so its path
fits macOS's 104 bytes. Linux keeps its own calls (no writer thread, no watcher
process); ``JAZZMINE_PORTABLE=1`` forces the twins, so the code that runs on macOS runs
in the Linux test suite too. The model budget's memory facts (the machine's memory, a
server's resident size) come from ``/proc`` on Linux and from ``sysconf`` and ``ps``
elsewhere. Windows has neither process groups, parent death, nor Unix
sockets in the form used here: only transports that start no child run there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

PORTABLE_ENV = "JAZZMINE_PORTABLE"
# sun_path's size, less its terminating NUL: 108 on Linux, 104 on macOS and the BSDs.
SOCKET_PATH_LIMIT = 107 if sys.platform.startswith("linux") else 103
# Where a short socket directory goes when the temp dir's path is too long (macOS's
# /var/folders/.../T/ is about 50 bytes before our own names).
SHORT_TEMP_ROOT = "/tmp"

WINDOWS_REASON = (
    "running llama.cpp as a child process is not supported on Windows yet: it relies on "
    "POSIX process groups (to stop a child and everything it started), a child that dies "
    "with its parent, and Unix sockets (warm mode); on Windows, use "
    "LocalLLM(transport=...) with your own transport, or MockTransport"
)


def portable_forced() -> bool:
    """``JAZZMINE_PORTABLE=1``: use the portable twins even where Linux's calls exist."""
    return os.environ.get(PORTABLE_ENV, "") not in ("", "0")


def is_linux() -> bool:
    return sys.platform.startswith("linux")


def uses_memfd() -> bool:
    """The prompt goes through ``memfd`` (else through a pipe read as ``/dev/fd/N``)."""
    return hasattr(os, "memfd_create") and not portable_forced()


def uses_pdeathsig() -> bool:
    """Children die with us through ``PR_SET_PDEATHSIG`` (else through a lifeline pipe)."""
    return is_linux() and not portable_forced()


def uses_proc() -> bool:
    """Memory facts come from ``/proc`` (else from ``sysconf`` and ``ps``)."""
    return is_linux() and not portable_forced()


def total_memory_mib() -> int | None:
    """The machine's memory in MiB (MemTotal), None when unknown."""
    if uses_proc():
        return _proc_field("/proc/meminfo", "MemTotal:")
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return None


def resident_mib(pid: int) -> int | None:
    """A process's resident size in MiB (VmRSS), None when unknown."""
    if uses_proc():
        return _proc_field(f"/proc/{pid}/status", "VmRSS:")
    try:
        done = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
        return int(done.stdout.split()[0]) // 1024
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _proc_field(path: str, name: str) -> int | None:
    """A ``kB`` field of a /proc file, in MiB."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(name):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def runs_children() -> bool:
    """Whether this system can run llama.cpp children the way this package does."""
    return os.name == "posix"


def short_private_dir(prefix: str, longest_name: int) -> str:
    """A new 0700 directory in which ``longest_name`` more bytes still fit a socket path.

    The temp dir is used when it is short enough; else ``SHORT_TEMP_ROOT``. ``mkdtemp``
    creates the directory 0700 and fails rather than reuse one, so nobody else's
    directory (a planted one in a shared /tmp included) is ever taken.
    """
    room = SOCKET_PATH_LIMIT - len(prefix) - 8 - 2 - longest_name  # 8 random, 2 slashes
    base = tempfile.gettempdir()
    if portable_forced() or len(base.encode()) > room:
        base = SHORT_TEMP_ROOT
    if len(base.encode()) > room:
        raise OSError(f"no temporary directory short enough for a Unix socket ({base})")
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def at_fork_in_child(action: Callable[[], None]) -> None:
    """``os.register_at_fork(after_in_child=action)`` where there is fork (not Windows,
    where importing the package must still work for custom transports)."""
    register = getattr(os, "register_at_fork", None)
    if register is not None:
        register(after_in_child=action)


def require_children(what: str) -> None:
    """Raise the one clear error for a use that needs child processes where there are none."""
    if not runs_children():
        from .errors import LLMUnsupportedPlatformError

        raise LLMUnsupportedPlatformError(f"{what}: {WINDOWS_REASON}")
