"""A call's private files (the prompt, a JSON schema, a grammar), never on disk.

llama.cpp reads ``-f`` and the constraint files by name. On Linux each is an anonymous
in-memory file (``memfd``) the child opens as ``/proc/self/fd/N``: written before the
child starts, gone with its last descriptor. Elsewhere (``system.uses_memfd``) each is a
pipe the child opens as ``/dev/fd/N`` and reads with a plain stream (llama.cpp's
``std::ifstream``, no seek), while a thread of ours writes it: a prompt larger than the
pipe's buffer cannot deadlock against the child's output, which the call's own thread
reads. The child is passed only the read end; the writer ends on EOF-by-the-reader
(``EPIPE``) when the child dies unread, so no writer outlives its child for long. A
forked copy of this process closes the pipes it inherited, so it never holds a reader's
EOF back.
"""

from __future__ import annotations

import contextlib
import os
import threading

from .. import system

# Every pipe end of ours still open, for a forked copy to close (it has no writers).
_pipe_ends: set[int] = set()
_pipe_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _pipe_lock
    for fd in list(_pipe_ends):
        with contextlib.suppress(OSError):
            os.close(fd)
    _pipe_ends.clear()
    _pipe_lock = threading.Lock()


system.at_fork_in_child(_after_fork_in_child)


class PrivateFiles:
    """The private files of one call: what the child is passed, and what we close."""

    def __init__(self) -> None:
        self.pass_fds: tuple[int, ...] = ()
        self._ours: list[int] = []  # memfds and pipe read ends: closed by release()
        self._feeds: list[tuple[int, bytes]] = []  # pipe write ends not yet being written

    def add(self, data: bytes) -> str:
        """A new private file holding ``data``; the name the child opens it by."""
        if system.uses_memfd():
            fd = os.memfd_create("jazzmine-prompt", os.MFD_CLOEXEC)
            self._ours.append(fd)
            write_all(fd, data)
            self.pass_fds += (fd,)
            return f"/proc/self/fd/{fd}"
        read_end, write_end = os.pipe()  # both close-on-exec: only pass_fds reach a child
        with _pipe_lock:
            _pipe_ends.update((read_end, write_end))
        self._ours.append(read_end)
        self._feeds.append((write_end, data))
        self.pass_fds += (read_end,)
        return f"/dev/fd/{read_end}"

    def feed(self) -> None:
        """Once the child has started: write each pipe's contents from a thread of its own."""
        feeds, self._feeds = self._feeds, []
        for write_end, data in feeds:
            threading.Thread(
                target=_write_and_close,
                args=(write_end, data),
                name="jazzmine-prompt-writer",
                daemon=True,
            ).start()

    def release(self) -> None:
        """Close our descriptors (the child holds its own); unfed pipes are dropped."""
        ours = self._ours + [write_end for write_end, _ in self._feeds]
        self._ours, self._feeds = [], []
        for fd in ours:
            _close(fd)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        write_all(fd, data)
    except OSError:
        pass  # the child is gone (EPIPE) or was never going to read: nothing to deliver
    finally:
        _close(fd)


def _close(fd: int) -> None:
    with _pipe_lock:
        _pipe_ends.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
