"""The platform choice: the Linux-only calls sit behind it, and each has a tested twin."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from jazzmine.local import system

PACKAGE = Path(system.__file__).parent
# Each Linux-only call, where it may appear, and the test of its portable twin.
LINUX_ONLY = {
    "prctl": {"process/launcher.py"},  # twin: the lifeline (tests/process/test_launcher.py)
    "memfd_create": {"transports/private_file.py", "system.py"},  # twin: a pipe (test_private_file)
    "/proc/": {"transports/private_file.py", "system.py"},  # /proc/self/fd/N of a memfd
}
# The choice each file must make before it uses the call.
CHOICES = {
    "process/launcher.py": "system.uses_pdeathsig()",
    "transports/private_file.py": "system.uses_memfd()",
    "system.py": "def uses_memfd",
}


def test_every_linux_only_call_is_behind_the_platform_choice() -> None:
    found: dict[str, set[str]] = {call: set() for call in LINUX_ONLY}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        # Docstrings and comments may name a call; only code counts.
        code = re.sub(r'"""(?!\n/\*).*?"""|#[^\n]*', "", text, flags=re.DOTALL)
        for call in LINUX_ONLY:
            if call in code:
                found[call].add(path.relative_to(PACKAGE).as_posix())
    for call, files in found.items():
        assert files <= LINUX_ONLY[call], f"{call} outside the platform choice: {files}"
        for name in files:
            assert CHOICES[name] in (PACKAGE / name).read_text(), (name, call)
    assert found["prctl"] and found["memfd_create"]  # the scan sees them at all


def test_portable_is_forced_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(system.PORTABLE_ENV, raising=False)
    assert system.uses_memfd() == hasattr(os, "memfd_create")
    assert system.uses_pdeathsig() == system.is_linux()
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    assert not system.uses_memfd() and not system.uses_pdeathsig()
    monkeypatch.setenv(system.PORTABLE_ENV, "0")
    assert system.uses_pdeathsig() == system.is_linux()


def test_no_memfd_means_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(system.PORTABLE_ENV, raising=False)
    monkeypatch.delattr(os, "memfd_create", raising=False)
    assert not system.uses_memfd()


def test_the_socket_directory_is_short_and_private_under_a_long_temp_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    long_dir = tmp_path / ("x" * 90)  # like macOS's /var/folders/.../T/, and longer
    long_dir.mkdir()
    monkeypatch.setattr(system.tempfile, "tempdir", str(long_dir))
    monkeypatch.setattr(system, "SOCKET_PATH_LIMIT", 103)  # macOS's sun_path, less its NUL
    monkeypatch.delenv(system.PORTABLE_ENV, raising=False)
    directory = system.short_private_dir("jazzmine-server-", len("llama.sock"))
    try:
        assert len(os.path.join(directory, "llama.sock").encode()) <= 103
        assert not directory.startswith(str(long_dir))
        mode = os.stat(directory).st_mode
        assert stat.S_IMODE(mode) == 0o700 and os.stat(directory).st_uid == os.getuid()
    finally:
        os.rmdir(directory)
    # A short temp dir is kept.
    monkeypatch.setattr(system.tempfile, "tempdir", str(tmp_path))
    if len(str(tmp_path)) < 60:
        directory = system.short_private_dir("jazzmine-server-", len("llama.sock"))
        assert directory.startswith(str(tmp_path))
        os.rmdir(directory)


# ---------- Windows: custom transports only, one clear error at construction ----------
def test_without_child_processes_local_llm_refuses_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jazzmine.local import LLMInvalidRequestError, LLMUnsupportedPlatformError, LocalLLM

    monkeypatch.setattr(system, "runs_children", lambda: False)
    for options in ({}, {"keep_alive": -1}, {"binary_path": "/bin/true", "model": "m"}):
        with pytest.raises(LLMUnsupportedPlatformError) as raised:
            LocalLLM(**options)  # type: ignore[arg-type]
        message = str(raised.value)
        assert "not supported on Windows yet" in message
        for reason in ("process groups", "dies with its parent", "Unix sockets", "MockTransport"):
            assert reason in message
        assert isinstance(raised.value, LLMInvalidRequestError)


WINDOWS_LIKE = """
import builtins, os, sys
# What Windows lacks that this package's modules could touch at import or in a mock call.
for name in ("register_at_fork", "memfd_create", "fork", "killpg", "setsid"):
    if hasattr(os, name):
        delattr(os, name)
real_import = builtins.__import__
def no_posix_modules(name, *args, **kwargs):
    if name in ("fcntl", "termios", "pty", "resource"):
        raise ImportError(f"No module named {name!r}")
    return real_import(name, *args, **kwargs)
builtins.__import__ = no_posix_modules
from jazzmine.local import LLMUnsupportedPlatformError, LocalLLM, MessagePart, MockTransport, system
from jazzmine.local.mock import reply
system.runs_children = lambda: False  # os.name is "nt" there
llm = LocalLLM(transport=MockTransport(lambda request: reply("fine"), runs_llama_cpp=False))
assert llm.generate([MessagePart("user", "hi")]).text == "fine"
try:
    LocalLLM()
except LLMUnsupportedPlatformError as error:
    print("refused:", error)
"""


def test_the_package_imports_and_mocks_without_posix_calls() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WINDOWS_LIKE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: LocalLLM() runs llama.cpp as a child process")


def test_the_memory_facts_portable_twins_agree_with_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model budget reads /proc on Linux; elsewhere sysconf and ps, run here forced."""
    total, resident = system.total_memory_mib(), system.resident_mib(os.getpid())
    assert total and resident
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    assert not system.uses_proc()
    portable_total, portable_resident = system.total_memory_mib(), system.resident_mib(os.getpid())
    assert portable_total is not None and abs(portable_total - total) <= total * 0.05
    assert portable_resident is not None and abs(portable_resident - resident) <= resident * 0.5 + 8
