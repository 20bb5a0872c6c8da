"""The pinned llama.cpp build: its source fetched from PyPI, built with cmake, and the
build's progress shown as one figure.

llama.cpp comes from the pinned ``llama-cpp-python`` source distribution on PyPI, which
carries it under ``vendor/llama.cpp``. The build is cached under the user cache
directory, keyed by version, build flags and the source patches applied before the build
(``defaults.SOURCE_PATCHES``, which make llama.cpp flush its logger before it exits), so
running setup again is instant.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .. import defaults
from .backends import configure_argv, describe
from .command import Report, run_logged

_STAMP = defaults.BUILD_STAMP
# cmake's Makefile generator starts its lines with "[ 42%]"; Ninja with "[17/210]".
_PERCENT = re.compile(r"^\[\s*(\d+)%\]")
_STEP_COUNT = re.compile(r"^\[(\d+)/(\d+)\]")
# A unit of build work, as both generators name it, in a real build or a dry run
# (where it is the quoted argument of the echo command).
_WORK = re.compile(r"\b((?:Building|Linking) [^\"\r\n]*[^\"\s])")


def ensure_build(report: Report, backend: str = "cpu") -> bool:
    """Build llama.cpp for ``backend`` into the cache unless it is there already; True
    when built now."""
    target = defaults.build_bin_dir(backend).parent
    if (target / _STAMP).exists():
        report(f"llama.cpp: cached {backend} build at {target / 'bin'}")
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
        for line in patch_source(source):
            report(f"llama.cpp: {line}")
        build = work / "build"
        report(f"llama.cpp: configuring the {backend} build: {describe(backend)}")
        configure = configure_argv(backend, str(source), str(build))
        report(f"llama.cpp: {' '.join(configure)}")
        run_logged(configure, work / "configure.log")
        jobs = str(os.cpu_count() or 2)
        targets = ["--target", *defaults.BUILD_TARGETS]
        build_argv = ["cmake", "--build", str(build), "-j", jobs, *targets]
        report(
            f"llama.cpp: building {', '.join(defaults.BUILD_TARGETS)} with {jobs} jobs (minutes)"
        )
        progress = BuildProgress(
            report, _count_build_steps(build, build_argv, work / "dry-run.log")
        )
        run_logged(build_argv, work / "build.log", on_line=progress.line)
        progress.finish()
        staged = work / "install"
        (staged / "bin").mkdir(parents=True)
        for name in defaults.BUILD_TARGETS:
            shutil.copy2(build / "bin" / name, staged / "bin" / name)
        # What was compiled, for whoever checks the cache: the flags, and each patched
        # file's digest as it stood when cmake read it.
        (staged / _STAMP).write_text(
            " ".join(defaults.backend_cmake_flags(backend))
            + "\n"
            + "".join(f"patched {name} sha256={digest}\n" for name, digest in patched(source))
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    report(f"llama.cpp: built into {target / 'bin'}")
    return True


def patch_source(source: Path) -> list[str]:
    """Apply ``defaults.SOURCE_PATCHES`` to the llama.cpp tree at ``source``; what was done.

    A file already patched is left alone, so applying twice is applying once. A file
    that holds neither the expected text nor its patched form is a source we do not
    know: the build stops rather than ship a binary without the fix.
    """
    done = []
    for name, before, after in defaults.SOURCE_PATCHES:
        path = source / name
        if not path.is_file():
            raise RuntimeError(f"cannot patch llama.cpp's {name}: the source has no such file")
        text = path.read_text()
        if text == after:
            done.append(f"{name} already patched")
            continue
        if text != before:
            raise RuntimeError(
                f"cannot patch llama.cpp's {name}: it is not the text this version of "
                f"jazzmine expects (llama-cpp-python {defaults.LLAMA_CPP_PYTHON_VERSION});"
                f" found:\n{text[:2000]}"
            )
        path.write_text(after)
        done.append(f"patched {name} (flush the logger before main returns)")
    return done


def patched(source: Path) -> list[tuple[str, str]]:
    """Each patched file's name and the sha256 of its text now."""
    return [
        (name, hashlib.sha256((source / name).read_bytes()).hexdigest())
        for name, _, _ in defaults.SOURCE_PATCHES
    ]


def _fetch_source(work: Path, report: Report) -> Path:
    archive = download_sdist(work, report)
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    report("llama.cpp: unpacking vendor/llama.cpp")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if sys.version_info >= (3, 12):
            tar.extractall(work, members=members, filter="data")
        else:
            tar.extractall(work, members=members)
    return work / prefix


def download_sdist(work: Path, report: Report) -> Path:
    """The pinned llama-cpp-python source distribution, downloaded once into the cache
    (``work`` holds the download's log)."""
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    downloads = defaults.cache_root() / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archives = list(downloads.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not archives:
        report(f"llama.cpp: downloading llama-cpp-python {version} source distribution from PyPI")
        run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                # The sdist of llama-cpp-python, and wheels for everything else: pip still
                # reads the sdist's metadata, which needs its build requirements, and with
                # `--no-binary :all:` those were compiled from source too (about 1.5 min).
                "--only-binary",
                ":all:",
                "--no-binary",
                "llama-cpp-python",
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
    return archives[0]


def _count_build_steps(build: Path, build_argv: list[str], log_path: Path) -> int | None:
    """How many compile and link steps the build will run, from a dry run of it.

    ``cmake --build`` restarts its percentage for every target it is given, so the
    percentages alone cannot make one figure. The dry run (``make -n -k``, ``ninja -n``)
    lists the steps without running them, in a fraction of a second. The Makefile dry
    run cannot see link steps whose inputs are not built yet, so the count is a little
    low; the figure stops short of 100% until the build has ended. None when the dry
    run lists nothing (an unknown generator): the progress then falls back to cmake's
    own figure, kept from going down.
    """
    extra = ["-n"] if _generator(build) == "Ninja" else ["-n", "-k"]
    try:
        done = subprocess.run(
            [*build_argv, "--", *extra],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    log_path.write_text(done.stdout + done.stderr)
    count = count_work(done.stdout.splitlines())
    return count or None


def _generator(build: Path) -> str:
    try:
        cache = (build / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return ""
    found = re.search(r"^CMAKE_GENERATOR:INTERNAL=(.*)$", cache, re.MULTILINE)
    return found.group(1).strip() if found else ""


def count_work(lines: Iterable[str]) -> int:
    """The distinct build steps named in ``lines``."""
    return len({found.group(1) for line in lines if (found := _WORK.search(line))})


class BuildProgress:
    """One figure for the whole build that never goes down, printed every few percent.

    It counts the distinct steps seen against the dry run's count (``expected``): every
    target cmake is given restarts cmake's own percentage at 0, while a library
    built for the first target is not built again for the next. Ninja's ``[n/total]``
    covers all targets already and is used as it is.
    """

    def __init__(self, report: Report, expected: int | None) -> None:
        self.report = report
        self.expected = expected
        self.seen: set[str] = set()
        self.shown = -1
        self.shown_at = 0.0
        self.percent = 0

    def line(self, line: str) -> None:
        percent = self._percent(line)
        if percent is None:
            return
        # Never 100% before cmake has returned: the last link may still fail.
        percent = min(max(percent, self.percent), 99)
        self.percent = percent
        now = time.monotonic()
        if percent > self.shown and (percent - self.shown >= 5 or now - self.shown_at > 20):
            self._show(percent, now)

    def finish(self) -> None:
        if self.shown < 100:
            self._show(100, time.monotonic())

    def _percent(self, line: str) -> int | None:
        steps = _STEP_COUNT.match(line)
        if steps:
            done, total = int(steps.group(1)), int(steps.group(2))
            return done * 100 // total if total else None
        work = _WORK.search(line)
        if self.expected is not None:
            if work is None:
                return None
            self.seen.add(work.group(1))
            return len(self.seen) * 100 // self.expected
        found = _PERCENT.match(line)
        return int(found.group(1)) if found else None

    def _show(self, percent: int, now: float) -> None:
        self.shown, self.shown_at = percent, now
        self.report(f"llama.cpp: {percent:3d}% built")
