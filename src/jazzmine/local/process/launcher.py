"""The launcher that ties a child's life to this process.

Every llama.cpp child is started through a launcher that makes sure the child dies when
this process does, SIGKILL and OOM kill included, then execs the real program (so the
program keeps the launcher's pid, process group and exit status). Two ways, chosen at
run time (``system.uses_pdeathsig``):

* Linux: ``PR_SET_PDEATHSIG`` asks the kernel to SIGKILL the child when the thread that
  forked it ends, so children are started from a thread that lives as long as the
  process (``spawner``).
* Elsewhere (macOS, the BSDs; forced on Linux by ``JAZZMINE_PORTABLE=1``): a lifeline, one
  pipe per process whose write end only this process holds (close-on-exec, and closed in
  a forked copy). The launcher forks a small watcher before it execs; the watcher keeps
  only the read end and, when it reads EOF (this process is gone, however it died),
  SIGKILLs the child's whole process group, itself included. It exits by itself once the
  program has (it is then no longer the watcher's parent).

The C launcher, compiled once by ``jazzmine setup`` under a name keyed by its source,
costs about a millisecond and builds without ``<sys/prctl.h>`` (macOS's compilers);
without it, the same few lines run in Python (``python -S``), about 20 ms.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from .. import defaults, system

C_SOURCE = r"""
/* jazzmine-launch PARENT_PID LIFELINE PROGRAM [ARGS...]: exec PROGRAM, killed when PARENT ends.
   LIFELINE "-": Linux's PR_SET_PDEATHSIG. A descriptor number: a pipe whose EOF means the
   parent is gone; a watcher forked here then SIGKILLs the process group. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__) && !defined(JAZZMINE_NO_PRCTL)
#include <sys/prctl.h>
#define HAVE_PDEATHSIG 1
#endif

/* Fds a watcher closes: Popen left only stdio, the lifeline and the private files. */
#define CLOSE_BELOW 1024

static void watch(int lifeline, pid_t program) {
    /* The signals that ask the program to stop (SIGINT: print your statistics) are not
       for us: the watcher stays until the program is gone, and dies in the final SIGKILL. */
    signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN); signal(SIGHUP, SIG_IGN);
    int null = open("/dev/null", O_RDWR);
    /* Holding the program's stdout or stderr would keep its reader from seeing EOF. */
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
    for (int fd = 3; fd < CLOSE_BELOW; fd++) if (fd != lifeline) close(fd);
    for (;;) {
        struct pollfd wait_for = { lifeline, POLLIN, 0 };
        int ready = poll(&wait_for, 1, 1000);
        if (ready < 0 && errno != EINTR) _exit(0);
        if (ready > 0) {
            char byte;
            ssize_t got = read(lifeline, &byte, 1);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                kill(0, SIGKILL); /* the parent is gone: the whole group, us included */
                _exit(0);
            }
        }
        if (getppid() != program) _exit(0); /* the program ended: nothing left to guard */
    }
}

int main(int argc, char **argv) {
    if (argc < 4) return 64;
    if (strcmp(argv[2], "-") == 0) {
#ifdef HAVE_PDEATHSIG
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return 71;
        /* The parent may have died before prctl: then nobody would ever signal us. */
        if (getppid() != (pid_t)strtol(argv[1], NULL, 10)) return 70;
#else
        fputs("jazzmine-launch: no PR_SET_PDEATHSIG here; give a lifeline\n", stderr);
        return 71;
#endif
    } else {
        int lifeline = (int)strtol(argv[2], NULL, 10);
        pid_t program = getpid();
        pid_t watcher = fork();
        if (watcher < 0) { perror("jazzmine-launch: fork"); return 71; }
        if (watcher == 0) watch(lifeline, program);
        close(lifeline);
    }
    execv(argv[3], argv + 3);
    perror("jazzmine-launch: execv");
    return 127;
}
"""

PYTHON_SOURCE = """
import os, select, sys
parent, lifeline, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if lifeline == "-":
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:
        os._exit(70)
else:
    fd, program = int(lifeline), os.getpid()
    if os.fork() == 0:
        import signal
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.closerange(3, fd)
        os.closerange(fd + 1, 1024)
        while os.getppid() == program:
            if select.select([fd], [], [], 1.0)[0] and not os.read(fd, 1):
                os.kill(0, 9)
        os._exit(0)
    os.close(fd)
os.execv(argv[0], argv)
"""

NAME = "jazzmine-launch"

# This process's lifeline: (read end, write end), made on first use.
_lifeline: tuple[int, int] | None = None
_lifeline_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked copy must not keep its parent's children alive: it drops the lifeline
    (its own children get a lifeline of its own)."""
    global _lifeline, _lifeline_lock
    if _lifeline is not None:
        for fd in _lifeline:
            os.close(fd)
    _lifeline = None
    _lifeline_lock = threading.Lock()


system.at_fork_in_child(_after_fork_in_child)


def lifeline_fd() -> int:
    """The read end of this process's lifeline (the write end is never inherited)."""
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()
        return _lifeline[0]


def path() -> Path:
    """The compiled launcher, named by its source: a new source is a new binary."""
    digest = hashlib.sha256(C_SOURCE.encode()).hexdigest()[:8]
    return defaults.build_bin_dir() / f"{NAME}-{digest}"


def command(argv: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """``argv`` run through the launcher, for a child started by this process, and the
    descriptors the launcher must be given (the lifeline, where one is used)."""
    compiled = path()
    parent = str(os.getpid())
    fds: tuple[int, ...] = ()
    if system.uses_pdeathsig():
        lifeline = "-"
    else:
        fd = lifeline_fd()
        lifeline, fds = str(fd), (fd,)
    if os.access(compiled, os.X_OK):
        return [str(compiled), parent, lifeline, *argv], fds
    return [sys.executable, "-S", "-c", PYTHON_SOURCE, parent, lifeline, *argv], fds


def build(target: Path, defines: tuple[str, ...] = ()) -> Path:
    """Compile the C launcher to ``target`` (set-up does this once per build).

    ``defines`` are extra compiler flags: the tests build the portable launcher on Linux
    with ``-DJAZZMINE_NO_PRCTL`` (as on a system without ``<sys/prctl.h>``).
    """
    compiler = shutil.which("cc") or shutil.which("clang") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError(
            "a C compiler is needed to build the launcher "
            "(apt-get install gcc; on macOS: xcode-select --install)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source = target.with_name(f".{target.name}.c")
    source.write_text(C_SOURCE)
    partial = target.with_name(f".{target.name}.partial")
    try:
        done = subprocess.run(
            [compiler, "-O2", *defines, "-x", "c", "-o", str(partial), str(source)],
            capture_output=True,
            text=True,
        )
    finally:
        source.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"building {NAME} failed:\n{done.stderr[-2000:]}")
    os.replace(partial, target)
    return target
