"""Hostile input and hostile binaries: every piece of work is bounded, privacy flags are
final. (Forks and dead parents: test_fork.py.)"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.probes import loop_ticks_during

from jazzmine.local import LLMInvalidRequestError, LocalLLM, MessagePart
from jazzmine.local.transports.binary import PROBE_OUTPUT_LIMIT, probe

HELLO = [MessagePart("user", "Hello")]

ENDLESS = """
import sys
if "--help" in sys.argv:
    print("usage: endless -p PROMPT")
    sys.exit(0)
while True:
    sys.stdout.write("word "); sys.stdout.flush()
"""

HELP_FLOOD = """
import sys
while True:
    sys.stdout.write("x" * 65536)
"""


def test_max_tokens_is_enforced_on_a_binary_that_ignores_it(
    make_script: Callable[..., str], tmp_path: Path
) -> None:
    llm = LocalLLM(binary_path=make_script("endless", ENDLESS), model="label", max_tokens=5)
    started = time.monotonic()
    response = llm.generate(HELLO)
    assert time.monotonic() - started < 10
    assert response.finish_reason == "length"
    assert 0 < len(response.text) <= 5 * 4
    assert response.usage.completion_tokens <= 5
    assert response.api_metrics is not None and response.api_metrics["usage_source"] == "estimated"
    streamed = llm.stream(HELLO)
    assert "".join(streamed) == response.text and streamed.response.finish_reason == "length"


def test_an_argv_template_without_max_tokens_is_cut_too(make_script: Callable[..., str]) -> None:
    script = make_script("endless", ENDLESS)
    llm = LocalLLM(binary_path=script, model="m", argv_template=["-p", "{prompt}"], max_tokens=3)
    response = llm.generate(HELLO)
    assert response.finish_reason == "length" and len(response.text) <= 12


def test_a_help_probe_that_prints_forever_is_bounded_in_time_and_memory(
    make_script: Callable[..., str],
) -> None:
    flood = make_script("flood", HELP_FLOOD)
    tracemalloc.start()
    started = time.monotonic()
    info = probe(flood)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 20
    assert peak < 8 * PROBE_OUTPUT_LIMIT
    assert not info.flags  # nothing but x's: a -p binary


@pytest.mark.parametrize(
    "flags",
    [
        ["--host", "127.0.0.1"],
        ["--port", "8080"],
        ["--host=0.0.0.0"],
        ["--slots"],
        ["-p", "hello"],
        ["--prompt", "hello"],
        ["-f", "/etc/passwd"],
        ["--api-key-file", "/tmp/k"],
    ],
)
@pytest.mark.parametrize("keep_alive", [None, "1m"], ids=["per-call", "warm"])
def test_flags_that_undo_privacy_are_refused_at_construction(
    flags: list[str], keep_alive: str | None
) -> None:
    with pytest.raises(ValueError, match="private") as caught:
        LocalLLM(binary_path="/bin/true", model="m", extra_args=flags, keep_alive=keep_alive)
    assert isinstance(caught.value, LLMInvalidRequestError)


def test_ordinary_flags_still_pass() -> None:
    llm = LocalLLM(binary_path="/bin/true", model="m", extra_args=["--top-k", "5"])
    assert llm.config.extra_args == ("--top-k", "5")
    assert os.path.basename(llm.binary_path) == "true"


# Quick for the short message a template is checked with at construction; for a long one,
# nested loops that would run for hours.
SLOW_TEMPLATE = (
    "{% set n = messages[0]['content'] | length %}"
    "{% for i in range(n * n) %}{% for j in range(n * n) %}{% endfor %}{% endfor %}"
    "{{ messages[0]['content'] }}"
)
LONG = [MessagePart("user", "x" * 300)]


def test_a_template_that_runs_forever_is_bounded_by_the_timeout_and_off_the_loop() -> None:
    import asyncio

    from jazzmine.local import LLMTimeoutError, MockReply, MockTransport

    transport = MockTransport(lambda request: MockReply(["never"]))
    llm = LocalLLM(chat_template=SLOW_TEMPLATE, timeout=1.0, transport=transport)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="template"):
        llm.generate(LONG)
    assert time.monotonic() - started < 5

    async def refused() -> None:
        with pytest.raises(LLMTimeoutError):
            await llm.agenerate(LONG)

    # The loop kept running while the template rendered in its thread.
    assert asyncio.run(loop_ticks_during(refused())) >= 20
    assert transport.requests == []


@pytest.mark.parametrize("keep_alive", [None, -1], ids=["per-call", "warm"])
def test_a_prompt_over_the_context_is_one_typed_error_in_both_modes(
    completion_bin: str, model_path: str, keep_alive: int | None
) -> None:
    from jazzmine.local import LLMContextLengthError

    llm = LocalLLM(
        binary_path=completion_bin, model=model_path, n_ctx=128, max_tokens=4, keep_alive=keep_alive
    )
    try:
        with pytest.raises(LLMContextLengthError) as caught:
            llm.generate([MessagePart("user", "word " * 300)])
    finally:
        llm.close()
    error = caught.value
    assert isinstance(error, LLMInvalidRequestError)
    assert error.prompt_tokens is not None and error.context_size is not None
    assert error.prompt_tokens > error.context_size >= 128
    assert str(error).startswith(f"the prompt is {error.prompt_tokens} tokens")
