"""Binaries: which kind a path is (learned once from ``--help``), and how each is run.

llama-completion and llama-cli (its chat UI, whose chrome must not reach the reply), a
user's ``-p PROMPT`` script (its echo of the prompt removed, usage estimated), and a
program with flags of its own, driven by ``prompt_flag`` or ``argv_template``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from helpers.real_calls import QUESTION, deterministic

from jazzmine.local import LocalLLM, estimate_tokens
from jazzmine.local.transports import binary as binaries


def test_llama_cli_chat_ui_returns_the_same_reply_alone(
    cli_bin: str, completion_bin: str, model_path: str
) -> None:
    expected = deterministic(completion_bin, model_path).generate(QUESTION).text
    response = deterministic(cli_bin, model_path).generate(QUESTION)
    assert response.api_metrics is not None
    assert response.api_metrics["binary_kind"] == "llama-cli"
    assert response.text == expected
    for chrome in ("available commands", "Exiting", "> User:", "build", "t/s"):
        assert chrome not in response.text
    assert response.usage.completion_tokens > 0
    assert response.api_metrics["usage_source"] == "reported"
    assert "".join(deterministic(cli_bin, model_path).stream(QUESTION)) == expected


def test_a_users_p_script_works_and_its_echo_is_removed(
    make_script: Callable[..., str], completion_bin: str, base_model_path: str
) -> None:
    # A user's wrapper in the spec's convention: takes -p PROMPT, and shows the prompt.
    # It gets the flattened prompt, so it runs the base model, which continues it.
    script = make_script(
        "my-llama.sh",
        f"""
        [ "$1" = "--help" ] && {{ echo "usage: my-llama.sh -p PROMPT"; exit 0; }}
        exec {completion_bin} -m {base_model_path} -n 12 --temp 0 -c 512 -no-cnv --simple-io \\
            --offline "$@"
        """,
        python=False,
    )
    llm = LocalLLM(binary_path=script, model="my-model")
    assert binaries.probe(script).kind is binaries.BinaryKind.PROMPT_FLAG
    response = llm.generate(QUESTION)
    assert response.text
    assert "capital of France?" not in response.text
    assert response.api_metrics is not None and response.api_metrics["usage_source"] == "estimated"
    assert response.usage.prompt_tokens == estimate_tokens(llm.build_request(QUESTION).prompt)


def test_a_binary_with_other_flags_is_configured_in_python(
    make_script: Callable[..., str], completion_bin: str, base_model_path: str
) -> None:
    # A program of the user's is given the flattened prompt: the base model's format.
    script = make_script(
        "input-llm",
        f"""
        import os, sys
        args = sys.argv[1:]
        if args == ["--help"]:
            print("usage: input-llm --input TEXT [--tokens N]"); sys.exit(0)
        text = args[args.index("--input") + 1]
        n = args[args.index("--tokens") + 1] if "--tokens" in args else "8"
        os.execv({completion_bin!r}, [{completion_bin!r}, "-m", {base_model_path!r}, "-p", text,
                 "-n", n,
                 "--temp", "0", "-c", "512", "-no-cnv", "--no-display-prompt", "--simple-io"])
        """,
    )
    by_flag = LocalLLM(binary_path=script, model="x", prompt_flag="--input").generate(QUESTION)
    templated = LocalLLM(
        binary_path=script,
        model="x",
        max_tokens=8,
        argv_template=["--input", "{prompt}", "--tokens", "{max_tokens}"],
    ).generate(QUESTION)
    assert by_flag.text and by_flag.text == templated.text


def test_binaries_are_told_apart_by_help_and_probed_once(
    make_script: Callable[..., str], tmp_path: Path, completion_bin: str, cli_bin: str
) -> None:
    log = tmp_path / "probes.log"
    script = make_script(
        "counting",
        f"""
        import sys
        open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
        print("usage: counting -p PROMPT")
        print("Reply")
        """,
    )
    llm = LocalLLM(binary_path=script, model="x")
    for _ in range(3):
        llm.generate(QUESTION)
    calls = log.read_text().splitlines()
    assert calls.count("--help") == 1 and sum(c.startswith("-p ") for c in calls) == 3
    assert binaries.probe(completion_bin).kind is binaries.BinaryKind.LLAMA_COMPLETION
    assert binaries.probe(cli_bin).kind is binaries.BinaryKind.LLAMA_CHAT_CLI
