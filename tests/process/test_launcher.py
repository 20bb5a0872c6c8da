"""The launcher, both ways: Linux's parent-death signal and the portable lifeline (as on
macOS, forced here), compiled from C (also as a system without <sys/prctl.h> compiles
it) and in Python. Whatever kills the parent, no child or watcher is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.probes import descendants, process_alive

from jazzmine.local import system
from jazzmine.local.process import launcher
from jazzmine.local.process.child import ChildProcess


@pytest.fixture(scope="module")
def portable_launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C launcher as a system without prctl builds it: no __linux__ at all."""
    return launcher.build(tmp_path_factory.mktemp("launcher") / "jazzmine-launch", ("-U__linux__",))


@pytest.fixture(scope="module")
def linux_launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return launcher.build(tmp_path_factory.mktemp("launcher") / "jazzmine-launch")


def test_the_portable_build_has_no_prctl_and_asks_for_a_lifeline(portable_launcher: Path) -> None:
    done = subprocess.run(
        [str(portable_launcher), str(os.getpid()), "-", "/bin/true"], capture_output=True, text=True
    )
    assert done.returncode == 71 and "give a lifeline" in done.stderr


def gone_soon(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while (alive := {pid for pid in pids if process_alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


WAYS = ["linux-c", "portable-c", "portable-python", "portable-c-on-linux-build"]


@pytest.mark.parametrize("way", WAYS)
def test_a_sigkilled_parent_leaves_no_child_and_no_watcher(
    way: str, portable_launcher: Path, linux_launcher: Path
) -> None:
    compiled = {
        "linux-c": linux_launcher,
        "portable-c": portable_launcher,
        "portable-python": Path("/nonexistent"),
        "portable-c-on-linux-build": linux_launcher,
    }[way]
    program = textwrap.dedent(
        f"""
        import sys, time, threading
        from pathlib import Path
        sys.path[:0] = {sys.path!r}
        from jazzmine.local.process import launcher
        from jazzmine.local.process.child import ChildProcess
        launcher.path = lambda: Path({str(compiled)!r})
        def start():
            child = ChildProcess([{sys.executable!r}, "-c", "import time; time.sleep(60)"],
                                 read_stdout=False, dies_with_parent=True).start()
            print(child.pid, flush=True)
        # From a short-lived thread: the child must still live until the process dies.
        thread = threading.Thread(target=start); thread.start(); thread.join()
        time.sleep(60)
        """
    )
    env = dict(os.environ)
    env.pop(system.PORTABLE_ENV, None)
    if way != "linux-c":
        env[system.PORTABLE_ENV] = "1"
    parent = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 5
    watchers: set[int] = set()
    while way != "linux-c" and not watchers and time.monotonic() < deadline:
        watchers = descendants(child_pid)  # the lifeline's watcher, forked by the launcher
        time.sleep(0.02)
    assert len(watchers) == (0 if way == "linux-c" else 1)
    time.sleep(0.3)
    assert process_alive(child_pid) and all(process_alive(pid) for pid in watchers)
    parent.kill()
    parent.wait()
    started = time.monotonic()
    assert gone_soon({child_pid, *watchers}, 5) == set()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("compiled", [True, False], ids=["c", "python"])
def test_through_the_lifeline_the_program_keeps_its_pid_output_and_status(
    compiled: bool, portable_launcher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    monkeypatch.setattr(launcher, "path", lambda: portable_launcher if compiled else Path("/no"))
    script = "import os, sys; print(os.getpid(), flush=True); sys.exit(3)"
    started = time.monotonic()
    with ChildProcess([sys.executable, "-c", script], dies_with_parent=True) as child:
        out = b"".join(child.stdout_chunks(time.monotonic() + 10))
        status = child.wait(time.monotonic() + 10)
    assert int(out) == child.pid and status.returncode == 3
    # The watcher holds no copy of stdout: EOF came with the program's exit.
    assert time.monotonic() - started < 3
    with ChildProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"], dies_with_parent=True
    ) as child:
        deadline = time.monotonic() + 5
        while not (watchers := descendants(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watchers
        child.interrupt(signal.SIGTERM)
        assert child.wait(time.monotonic() + 10).returncode == -signal.SIGTERM
    assert gone_soon(watchers, 3) == set()


def test_a_watcher_ends_by_itself_once_its_program_has(
    portable_launcher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(system.PORTABLE_ENV, "1")
    monkeypatch.setattr(launcher, "path", lambda: portable_launcher)
    child = ChildProcess(
        [sys.executable, "-c", "import time; time.sleep(0.5)"], dies_with_parent=True
    ).start()
    try:
        deadline = time.monotonic() + 5
        while not (watchers := descendants(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watchers
        assert child.exited_within(10)
        assert gone_soon(watchers, 3) == set()  # no stop() was needed
    finally:
        child.stop()
