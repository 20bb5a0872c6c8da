"""ChildProcess on real children (python -c snippets): output, stderr, the stop policy,
reaping, deadlines, and the parent-death guarantee."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers.probes import process_alive

from jazzmine.local.errors import DeadlineExceeded
from jazzmine.local.process.child import ChildProcess, StderrBuffer


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_stdout_streams_and_stderr_is_kept() -> None:
    code = """
        import sys, time
        for word in ("one ", "two ", "three"):
            sys.stdout.write(word); sys.stdout.flush(); time.sleep(0.02)
        sys.stderr.write("diagnostics\\n")
    """
    with ChildProcess(python(code)) as child:
        output = b"".join(child.stdout_chunks(None))
        status = child.wait(None)
    assert output == b"one two three"
    assert status.returncode == 0 and "diagnostics" in status.stderr


def test_a_flood_on_stderr_cannot_block_the_child() -> None:
    code = """
        import sys
        sys.stderr.write("x" * (8 * 1024 * 1024)); sys.stderr.flush()
        print("done")
    """
    with ChildProcess(python(code)) as child:
        output = b"".join(child.stdout_chunks(time.monotonic() + 30))
        status = child.wait(time.monotonic() + 30)
    assert output.strip() == b"done"
    assert "earlier bytes of stderr dropped" in status.stderr


def test_stop_terminates_then_kills_the_whole_group_and_reaps() -> None:
    code = """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # must be killed
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(grandchild.pid, flush=True)
        time.sleep(60)
    """
    child = ChildProcess(python(code), grace=0.2).start()
    first_line = next(child.stdout_chunks(time.monotonic() + 10))
    grandchild = int(first_line.split()[0])
    started = time.monotonic()
    child.stop()
    assert time.monotonic() - started < 3
    assert child.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 3
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(grandchild)
    child.stop()  # idempotent


def test_a_deadline_raises_and_the_owner_still_reaps() -> None:
    with (
        pytest.raises(DeadlineExceeded),
        ChildProcess(python("import time; time.sleep(60)")) as child,
    ):
        pid = child.pid
        list(child.stdout_chunks(time.monotonic() + 0.2))
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: not our child any more


def test_interrupt_from_another_thread_ends_a_blocked_read() -> None:
    import threading

    with ChildProcess(python("import time; time.sleep(60)")) as child:
        threading.Timer(0.2, child.interrupt, args=(signal.SIGKILL,)).start()
        started = time.monotonic()
        assert list(child.stdout_chunks(None)) == []
        assert time.monotonic() - started < 5
        assert child.wait(None).returncode == -signal.SIGKILL


def test_stdin_is_closed() -> None:
    with ChildProcess(python("import sys; print(repr(sys.stdin.read()))")) as child:
        assert b"".join(child.stdout_chunks(time.monotonic() + 10)).strip() == b"''"


def test_a_child_that_must_die_with_its_parent_does() -> None:
    program = textwrap.dedent(
        f"""
        import sys, time, threading
        sys.path[:0] = {sys.path!r}
        from jazzmine.local.process.child import ChildProcess
        def start():
            child = ChildProcess([{sys.executable!r}, "-c", "import time; time.sleep(60)"],
                                 read_stdout=False, dies_with_parent=True).start()
            print(child.pid, flush=True)
        # From a short-lived thread: the child must still live until the process dies.
        thread = threading.Thread(target=start); thread.start(); thread.join()
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    time.sleep(0.5)
    assert process_alive(child_pid)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while process_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child_pid)


def test_the_stderr_buffer_keeps_the_newest_part() -> None:
    buffer = StderrBuffer()
    buffer.add(b"a" * 10)
    assert buffer.text() == "a" * 10 and buffer.dropped == 0
