"""A call's private files: memfd on Linux, a pipe elsewhere; neither touches disk."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pytest
from helpers import fakes
from helpers.probes import open_fds

from jazzmine.local import LocalLLM, MessagePart, system
from jazzmine.local.process.child import ChildProcess
from jazzmine.local.transports.private_file import PrivateFiles

READ_IT = "import sys; data = open(sys.argv[1], 'rb').read(); print(len(data), data[:5])"


@pytest.fixture(params=["memfd", "pipe"])
def files_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pipe":
        monkeypatch.setenv(system.PORTABLE_ENV, "1")
    else:
        monkeypatch.delenv(system.PORTABLE_ENV, raising=False)
    return str(request.param)


def test_a_prompt_far_over_a_pipes_buffer_reaches_the_child(files_kind: str) -> None:
    files = PrivateFiles()
    data = b"hello" + os.urandom(4 * 1024 * 1024)  # 64 times a Linux pipe's buffer
    name = files.add(data)
    assert name.startswith("/dev/fd/" if files_kind == "pipe" else "/proc/self/fd/")
    started = time.monotonic()
    with ChildProcess([sys.executable, "-c", READ_IT, name], pass_fds=files.pass_fds) as child:
        files.feed()
        files.release()
        out = b"".join(child.stdout_chunks(time.monotonic() + 30))
        assert child.wait(time.monotonic() + 30).returncode == 0
    assert out.split() == [str(len(data)).encode(), b"b'hello'"]
    assert time.monotonic() - started < 20


def test_a_child_that_never_reads_leaves_no_writer_or_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    before = open_fds()
    files = PrivateFiles()
    files.add(b"x" * (1024 * 1024))
    with ChildProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=files.pass_fds
    ) as child:
        files.feed()
        files.release()
        child.interrupt(9)
    deadline = time.monotonic() + 5
    while open_fds() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open_fds() == before  # the writer got EPIPE and closed its end
    assert not any(t.name == "jazzmine-prompt-writer" for t in __import__("threading").enumerate())


def test_unfed_pipes_are_closed_on_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    before = open_fds()
    files = PrivateFiles()
    files.add(b"prompt")
    files.add(b"schema")
    files.release()  # the child never started
    assert open_fds() == before


def test_without_memfd_every_per_call_call_works(
    monkeypatch: pytest.MonkeyPatch, make_script: Callable[..., str]
) -> None:
    """The issue's reproduction: os.memfd_create removed (as on macOS)."""
    monkeypatch.delenv(system.PORTABLE_ENV, raising=False)
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setenv("FAKE_REPLY", "Hi there")
    binary = make_script("llama-completion", fakes.LLAMA_COMPLETION)
    with LocalLLM(binary_path=binary, model=binary) as llm:
        for _ in range(3):
            assert llm.generate([MessagePart("user", "word " * 40000)]).text == "Hi there"
