"""The per-call transport: LocalLLM's options reach llama.cpp as its own flags, and each
child gets a short OpenMP spin unless the caller chose one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.probes import children_running, environment_of
from helpers.real_calls import QUESTION

from jazzmine.local import LocalLLM


def test_options_reach_llama_cpp_as_its_own_flags(
    make_script: Callable[..., str], tmp_path: Path, completion_bin: str, model_path: str
) -> None:
    log = tmp_path / "argv.json"
    wrapper = make_script(
        "recording-llama",
        f"""
        import json, os, sys
        if sys.argv[1:] != ["--help"]:
            json.dump(sys.argv[1:], open({str(log)!r}, "w"))
        os.execv({completion_bin!r}, [{completion_bin!r}, *sys.argv[1:]])
        """,
    )
    llm = LocalLLM(
        binary_path=wrapper,
        model=model_path,
        temperature=0.25,
        max_tokens=3,
        seed=11,
        n_ctx=640,
        threads=1,
        n_gpu_layers=0,
        top_k=5,
        min_p=0.05,
    )
    response = llm.generate(QUESTION)
    argv = json.loads(log.read_text())
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert pairs["--temp"] == "0.25" and pairs["-n"] == "3" and pairs["-s"] == "11"
    # llama.cpp rounds the context up to a multiple of 256 itself: it is given rounded
    assert pairs["-c"] == "768" and pairs["-t"] == "1" and pairs["-ngl"] == "0"
    assert pairs["--top-k"] == "5" and pairs["--min-p"] == "0.05" and pairs["-m"] == model_path
    assert "--offline" in argv and "--no-escape" in argv
    assert response.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, "1000"), ({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "passive"}, None)],
    ids=["default", "caller-spin", "caller-policy"],
)
def test_llama_cpp_children_get_a_short_openmp_spin_unless_the_caller_chose(
    completion_bin: str,
    model_path: str,
    env: dict[str, str] | None,
    expected: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        max_tokens=400,
        extra_args=["--ignore-eos"],
        env=env,
    )
    stream = llm.stream(QUESTION)
    try:
        next(stream)
        (pid,) = children_running(completion_bin)
        seen = environment_of(pid)
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert seen.get("GOMP_SPINCOUNT") == expected
    if env is not None:
        assert set(seen) - set(env) <= {"GOMP_SPINCOUNT"}


# ---------- echo removal verifies (fake -p binaries: the real one echoes exactly) ----------
# (the fake's output, the reply when the echo is found in it, else None)
ECHOING = {
    "exact echo": ("say(prompt); say(' Hello!')", "Hello!"),
    # The echo after a line of the binary's own is removed where it stands: the flat
    # prompt's "\nUser:" in it once ended the reply at the log line, the words lost.
    "log line before the echo": (
        "say('loading model... done\\n'); say(prompt); say(' Hello!')",
        "loading model... done\nHello!",
    ),
    "echo with one extra space": ("say(prompt.replace(' ', '  ', 1)); say(' Hello!')", None),
    "no echo": ("say('Hello!')", None),
}


@pytest.mark.parametrize("case", list(ECHOING))
def test_the_echo_is_removed_only_where_it_matches_exactly(
    make_script: Callable[..., str], case: str
) -> None:
    from helpers import fakes

    body, echoed = ECHOING[case]
    script = make_script("echoing", fakes.PRELUDE + body)
    for llm in (
        LocalLLM(binary_path=script, model="m"),
        LocalLLM(binary_path=script, model="m", argv_template=["-p", "{prompt}"]),
    ):
        response = llm.generate(QUESTION)
        assert response.api_metrics is not None
        if echoed is not None:
            assert response.text == echoed
            assert response.api_metrics["echo"] == "removed"
        else:
            # Nothing removed: the reply is the output from its first character (up to a
            # turn marker, which the flat prompt echoed holds), and the caller is told.
            assert response.text and response.raw.lstrip().startswith(response.text)
            assert response.api_metrics["echo"] == "not found"


def test_real_llama_completion_as_a_p_binary_has_its_echo_removed(
    completion_bin: str, model_path: str
) -> None:
    llm = LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        max_tokens=8,
        argv_template=["-m", "{model}", "-p", "{prompt}", "-n", "{max_tokens}", "--temp", "0"],
        extra_args=["--no-warmup", "--simple-io", "--no-conversation"],
    )
    response = llm.generate(QUESTION)
    assert response.api_metrics is not None and response.api_metrics["echo"] == "removed"
    question = QUESTION[0].content
    assert response.text and question not in response.text and question in response.raw
