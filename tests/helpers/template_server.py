"""A real llama-server for chat-template comparisons, and the request and check made on it.

Used by test_template.py (one server per fixture template) and test_template_tools.py
(a model carrying a tool-use template). The server listens on a private Unix socket and
is always stopped afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from jazzmine.local.errors import LLMInvalidRequestError
from jazzmine.local.template.diff import common_prefix
from jazzmine.local.template.render import ChatTemplate, render
from jazzmine.local.types import MessagePart


def _wait_healthy(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama-server exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"llama-server did not become healthy:\n{log.read_text()[-2000:]}")


@contextmanager
def template_server(bin_dir: Path, model: str, *extra: str) -> Iterator[httpx.Client]:
    """A llama-server with --jinja on ``model`` (``extra`` arguments added), as a client."""
    # short private directory: Unix socket paths are limited to ~107 bytes
    workdir = Path(tempfile.mkdtemp(prefix="jz-tpl-", dir="/tmp"))
    socket_path = workdir / "s.sock"
    log = workdir / "server.log"
    argv = [
        str(bin_dir / "llama-server"),
        "-m", model,
        "--host", str(socket_path),
        "--jinja", *extra,
        "--no-slots", "--offline", "--no-webui", "-c", "512",
    ]  # fmt: skip
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
    client = httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket_path), verify=False),
        base_url="http://llama-server",
        trust_env=False,
        timeout=60,
    )
    try:
        _wait_healthy(client, process, log)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def message_json(message: MessagePart) -> dict[str, Any]:
    """A message as an OpenAI client sends it: the tool fields only when set."""
    found: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        found["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        found["tool_call_id"] = message.tool_call_id
    if message.name:
        found["name"] = message.name
    if message.reasoning_content:
        found["reasoning_content"] = message.reasoning_content
    return found


def apply_template(
    client: httpx.Client,
    messages: list[MessagePart],
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
    enable_thinking: bool | None = None,
) -> httpx.Response:
    """POST /apply-template; ``enable_thinking`` goes as chat_template_kwargs."""
    body: dict[str, Any] = {"messages": [message_json(m) for m in messages]}
    if not add_generation_prompt:
        body["add_generation_prompt"] = False
    if tools:
        body["tools"] = tools
    if enable_thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": enable_thinking}
    return client.post("/apply-template", json=body)


def same_as_server(
    response: httpx.Response,
    template: ChatTemplate,
    messages: list[MessagePart],
    **options: Any,
) -> None:
    """render() gives the server's prompt, or fails with the server's error message.

    A JSON parser's own words ("Failed to parse tool call arguments as JSON: <why>")
    differ between nlohmann's and Python's: there the part before the first ": " is
    compared.
    """
    if response.status_code == 200:
        assert render(template, messages, **options) == response.json()["prompt"]
        return
    with pytest.raises(LLMInvalidRequestError) as caught:
        render(template, messages, **options)
    mine, theirs = caught.value.message, response.json()["error"]["message"]
    assert mine
    if mine.startswith(_PARSER_WORDS):
        assert theirs.startswith(_PARSER_WORDS)
    else:
        assert mine in theirs


def difference_from_server(
    response: httpx.Response,
    template: ChatTemplate,
    messages: list[MessagePart],
    **options: Any,
) -> str | None:
    """What same_as_server checks, as a description of the difference (None: none), so
    that one test can go through many conversations and report every one that differs.
    Any other exception render() raises is a difference too."""
    try:
        mine: str | None = render(template, messages, **options)
        error = ""
    except LLMInvalidRequestError as exc:
        mine, error = None, exc.message
    except Exception as exc:
        return f"render() crashed: {type(exc).__name__}: {exc}"
    if response.status_code == 200:
        theirs = response.json()["prompt"]
        if mine is None:
            return f"render() refused ({error}); the server rendered {theirs[:200]!r}"
        if mine != theirs:
            at = common_prefix(mine, theirs)
            return f"differs at {at}: ours {mine[at:][:120]!r}, the server's {theirs[at:][:120]!r}"
        return None
    refusal = response.json()["error"]["message"]
    if mine is not None:
        return f"the server refused ({refusal}); render() gave {mine[:200]!r}"
    if not error:
        return "render() refused with an empty message"
    if error.startswith(_PARSER_WORDS):
        same = refusal.startswith(_PARSER_WORDS)
    else:
        same = error in refusal
    return None if same else f"refused with {error!r}, the server with {refusal!r}"


_PARSER_WORDS = "Failed to parse tool call arguments as JSON: "
