"""The thread that starts the children that must die with this process.

Linux's parent-death signal (``launcher``) follows the thread that forked the child,
not the process, and a call's own thread may be short-lived: so children started with
``dies_with_parent`` are forked by one thread that lives as long as the process.
``child.ChildProcess`` hands it the start; a forked copy of this process gets a
spawner of its own, since the parent's thread did not come along.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .. import system

_T = TypeVar("_T")


class _Spawner:
    """A thread that lives as long as the process and starts the children that must die
    with it: the parent-death signal (``launcher``) follows the thread that forked, and a
    call's own thread may be short-lived."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, start: Callable[[], _T]) -> _T:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="jazzmine-spawner", daemon=True
                )
                self._thread.start()
        answer: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._requests.put((start, answer))
        result = answer.get()
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    def _serve(self) -> None:
        while True:
            start, answer = self._requests.get()
            try:
                answer.put(start())
            except BaseException as error:  # handed to the caller, who raises it
                answer.put(error)


_spawner = _Spawner()


def run(start: Callable[[], _T]) -> _T:
    """``start()``, called on the spawner thread (started on first use); what it raises
    is raised here."""
    return _spawner.run(start)


def _after_fork_in_child() -> None:
    """A forked child starts its own spawner: the parent's thread did not come along."""
    global _spawner
    _spawner = _Spawner()


system.at_fork_in_child(_after_fork_in_child)
