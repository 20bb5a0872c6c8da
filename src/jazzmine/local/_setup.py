"""``jazzmine setup``: build the pinned llama.cpp and install the default model.

llama.cpp comes from the pinned ``llama-cpp-python`` source distribution on PyPI, which
carries it under ``vendor/llama.cpp``. The build is cached under the user cache
directory, keyed by version and build flags, so running setup again is instant; a lock
keeps two setups from building at once.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import defaults

Report = Callable[[str], None]
_STAMP = ".complete"
_PROGRESS = re.compile(r"^\[\s*(\d+)%\]")


@dataclass(frozen=True)
class SetupResult:
    bin_dir: Path
    model_path: Path
    built_now: bool


def run_setup(report: Report = print) -> SetupResult:
    root = defaults.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built_now = _ensure_build(report)
    model = defaults.ensure_default_model()
    report(f"model:    {model}")
    _smoke_test(defaults.build_bin_dir() / "llama-completion", model, report)
    return SetupResult(defaults.build_bin_dir(), model, built_now)


def _ensure_build(report: Report) -> bool:
    target = defaults.build_bin_dir().parent
    if (target / _STAMP).exists():
        report(f"llama.cpp: cached build at {target / 'bin'}")
        return False
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool} is needed to build llama.cpp; install it (e.g. apt-get install cmake g++)"
            )
    with tempfile.TemporaryDirectory(
        prefix="jazzmine-build-", dir=defaults.cache_root()
    ) as scratch:
        work = Path(scratch)
        source = _fetch_source(work, report)
        build = work / "build"
        report("llama.cpp: configuring (portable CPU flags, RPC on, no network)")
        _run(
            ["cmake", "-S", str(source), "-B", str(build), *defaults.CMAKE_FLAGS],
            work / "configure.log",
        )
        jobs = str(os.cpu_count() or 2)
        report(
            f"llama.cpp: building {', '.join(defaults.BUILD_TARGETS)} with {jobs} jobs (minutes)"
        )
        _run(
            ["cmake", "--build", str(build), "-j", jobs, "--target", *defaults.BUILD_TARGETS],
            work / "build.log",
            on_line=_progress_printer(report),
        )
        staged = work / "install"
        (staged / "bin").mkdir(parents=True)
        for name in defaults.BUILD_TARGETS:
            shutil.copy2(build / "bin" / name, staged / "bin" / name)
        (staged / _STAMP).write_text(" ".join(defaults.CMAKE_FLAGS) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    report(f"llama.cpp: built into {target / 'bin'}")
    return True


def _fetch_source(work: Path, report: Report) -> Path:
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    downloads = defaults.cache_root() / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archives = list(downloads.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not archives:
        report(f"llama.cpp: downloading llama-cpp-python {version} source distribution from PyPI")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
                str(downloads),
                f"llama-cpp-python=={version}",
            ],
            work / "download.log",
        )
        archives = list(downloads.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not archives:
        raise RuntimeError(f"pip did not produce llama_cpp_python-{version}.tar.gz in {downloads}")
    report("llama.cpp: unpacking vendor/llama.cpp")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        if sys.version_info >= (3, 12):
            archive.extractall(work, members=members, filter="data")
        else:
            archive.extractall(work, members=members)
    return work / prefix


def _progress_printer(report: Report) -> Callable[[str], None]:
    last = {"percent": -1, "at": 0.0}

    def on_line(line: str) -> None:
        match = _PROGRESS.match(line)
        if not match:
            return
        percent = int(match.group(1))
        now = time.monotonic()
        if percent != last["percent"] and (percent - last["percent"] >= 5 or now - last["at"] > 20):
            last["percent"], last["at"] = percent, now
            report(f"llama.cpp: {percent:3d}% built")

    return on_line


def _run(argv: list[str], log_path: Path, on_line: Callable[[str], None] | None = None) -> None:
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


def _smoke_test(binary: Path, model: Path, report: Report) -> None:
    done = subprocess.run(
        [
            str(binary),
            "-m",
            str(model),
            "-p",
            "Hello",
            "-n",
            "1",
            "-c",
            "512",
            "--no-display-prompt",
            "--no-conversation",
            "--offline",
            "--no-warmup",
            "--simple-io",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the one-token check failed (exit {done.returncode}):\n"
            + done.stderr.decode(errors="replace")[-3000:]
        )
    report("check:    one-token generation works")
    from . import rpc
    from .binary import probe

    if not probe(str(binary)).accepts("--rpc") or not (binary.parent / rpc.WORKER_NAME).exists():
        raise RuntimeError("the llama.cpp build has no RPC backend (--rpc, ggml-rpc-server)")
    report("check:    RPC backend built (--rpc, ggml-rpc-server)")
