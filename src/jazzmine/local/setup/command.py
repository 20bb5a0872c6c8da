"""Running one `jazzmine setup` command (pip, cmake) with its output kept in a log file,
and the report callback through which set-up tells a person what it is doing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

Report = Callable[[str], None]


def run_logged(
    argv: list[str], log_path: Path, on_line: Callable[[str], None] | None = None
) -> None:
    """Run ``argv`` with its output in ``log_path``; on failure, raise with the log's tail."""
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        ) as child,
    ):
        assert child.stdout is not None
        for line in child.stdout:
            log.write(line)
            if on_line is not None:
                on_line(line)
        code = child.wait()
    if code != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{argv[0]} failed with exit code {code}:\n{tail}")
