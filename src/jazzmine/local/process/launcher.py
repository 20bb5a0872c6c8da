"""The launcher that ties a child's life to this process.

Linux can SIGKILL a process when the thread that forked it ends (``PR_SET_PDEATHSIG``).
Every llama.cpp child is started through a launcher that asks for that and then execs
the real program, from a spawner thread that lives as long as the process (``process``):
so a SIGKILLed or OOM-killed Python leaves no llama.cpp process behind. The C launcher,
compiled once by ``jazzmine setup``, costs about a millisecond; without it, the same few
lines run in Python (``python -S``), about 20 ms.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import defaults

C_SOURCE = r"""
/* jazzmine-launch PARENT_PID PROGRAM [ARGS...]: exec PROGRAM, SIGKILLed when PARENT ends. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 64;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return 71;
    /* The parent may have died before prctl: then nobody would ever signal us. */
    if (getppid() != (pid_t)strtol(argv[1], NULL, 10)) return 70;
    execv(argv[2], argv + 2);
    perror("jazzmine-launch: execv");
    return 127;
}
"""

PYTHON_SOURCE = """
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[1]):
    os._exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""

NAME = "jazzmine-launch"


def path() -> Path:
    return defaults.build_bin_dir() / NAME


def argv_for(argv: list[str]) -> list[str]:
    """``argv`` run through the launcher, for a child started by this process."""
    compiled = path()
    parent = str(os.getpid())
    if os.access(compiled, os.X_OK):
        return [str(compiled), parent, *argv]
    return [sys.executable, "-S", "-c", PYTHON_SOURCE, parent, *argv]


def build(target: Path) -> Path:
    """Compile the C launcher to ``target`` (set-up does this once per build)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("a C compiler is needed to build the launcher (apt-get install gcc)")
    source = target.with_suffix(".c")
    source.write_text(C_SOURCE)
    partial = target.with_name(f".{target.name}.partial")
    done = subprocess.run(
        [compiler, "-O2", "-x", "c", "-o", str(partial), str(source)],
        capture_output=True,
        text=True,
    )
    source.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"building {NAME} failed:\n{done.stderr[-2000:]}")
    os.replace(partial, target)
    return target
