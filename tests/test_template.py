"""Chat templates: the Python rendering must equal llama-server's own ``/apply-template``.

Each fixture template gets one real llama-server (the base model, Gemma 3 270M, on a
private Unix socket), shared by every conversation rendered against it and always stopped
afterwards. The base model carries no template of its own and its tokenizer adds a BOS,
so what is compared is the fixture template alone, with the BOS handling exercised.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gguf_files import write_gguf
from jinja2.exceptions import SecurityError

from jazzmine.local import gguf
from jazzmine.local.errors import LLMInvalidRequestError
from jazzmine.local.template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    clear_cache,
    end_of_turn_markers,
    load_template,
    render,
    template_from_gguf,
)
from jazzmine.local.types import MessagePart as M

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
TEMPLATE_FILES = sorted(TEMPLATES.glob("*.jinja")) + sorted(TEMPLATES.glob("synthetic/*.jinja"))

CONVERSATIONS: dict[str, list[M]] = {
    "system_and_user": [M("system", "You are terse."), M("user", "Hi there")],
    "multi_turn": [
        M("system", "Be brief."),
        M("user", "Hi"),
        M("assistant", "Hello! How can I help?"),
        M("user", "Tell me a joke"),
        M("assistant", "Why did the chicken cross the road?"),
        M("user", "Why?"),
    ],
    "unicode_quotes_newlines": [
        M("user", "café 東京 🎉 \"double\" 'single'\nsecond line\n\n  indented\ttab \\ end"),
        M("assistant", 'Sure:\n- a "b"\n- c\n'),
        M("user", "  trailing space and newline \n"),
    ],
    "user_only": [M("user", "Hello")],
    "no_system_history": [M("user", "One"), M("assistant", "Two"), M("user", "Three")],
    "assistant_prefill": [M("user", "Write a haiku"), M("assistant", "Autumn")],
}


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


@pytest.fixture(scope="session")
def model_tokens(base_model_path: str) -> gguf.TokenizerInfo:
    return gguf.read_tokenizer_info(base_model_path)


@pytest.fixture(scope="module", params=TEMPLATE_FILES, ids=lambda p: p.stem)
def server(
    request: pytest.FixtureRequest, real_build: tuple[Path, Path], base_model_path: str
) -> Iterator[tuple[Path, httpx.Client]]:
    """A llama-server rendering with one fixture template, on a private Unix socket."""
    template_path: Path = request.param
    bin_dir, model = real_build[0], base_model_path
    # short private directory: Unix socket paths are limited to ~107 bytes
    workdir = Path(tempfile.mkdtemp(prefix="jz-tpl-", dir="/tmp"))
    socket_path = workdir / "s.sock"
    log = workdir / "server.log"
    argv = [
        str(bin_dir / "llama-server"),
        "-m", str(model),
        "--host", str(socket_path),
        "--jinja", "--chat-template-file", str(template_path),
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
        yield template_path, client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _apply_template(
    client: httpx.Client, messages: list[M], add_generation_prompt: bool
) -> httpx.Response:
    body: dict[str, Any] = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
    if not add_generation_prompt:
        body["add_generation_prompt"] = False
    return client.post("/apply-template", json=body)


def _template(path: Path, tokens: gguf.TokenizerInfo) -> ChatTemplate:
    return ChatTemplate(
        source=path.read_text(encoding="utf-8"),
        bos_token=tokens.bos_token,
        eos_token=tokens.eos_token,
        add_bos=tokens.add_bos,
        add_eos=tokens.add_eos,
    )


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["gen", "nogen"])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_render_is_byte_identical_to_llama_server(
    server: tuple[Path, httpx.Client],
    model_tokens: gguf.TokenizerInfo,
    conversation: str,
    add_generation_prompt: bool,
) -> None:
    template_path, client = server
    messages = CONVERSATIONS[conversation]
    response = _apply_template(client, messages, add_generation_prompt)
    assert response.status_code == 200, response.text
    expected = response.json()["prompt"]
    rendered = render(
        _template(template_path, model_tokens),
        messages,
        add_generation_prompt=add_generation_prompt,
    )
    assert rendered == expected


def test_a_template_error_is_the_same_error_as_llama_servers(
    server: tuple[Path, httpx.Client], model_tokens: gguf.TokenizerInfo
) -> None:
    """Two user turns in a row: templates that refuse it say so, the others render."""
    template_path, client = server
    messages = [M("user", "first"), M("user", "second")]
    response = _apply_template(client, messages, True)
    template = _template(template_path, model_tokens)
    if response.status_code == 200:
        assert render(template, messages) == response.json()["prompt"]
        return
    with pytest.raises(LLMInvalidRequestError) as caught:
        render(template, messages)
    assert caught.value.message
    assert caught.value.message in response.json()["error"]["message"]


# --- without a server ---------------------------------------------------------------


def _fixture(name: str) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), "<bos>", "<eos>")


GEMMA = "google-gemma-2-2b-it.jinja"
LLAMA3 = "meta-llama-Llama-3.1-8B-Instruct.jinja"
CHATML = "Qwen-Qwen2.5-7B-Instruct.jinja"
MISTRAL = "mistralai-Mistral-Nemo-Instruct-2407.jinja"


def test_a_template_that_raises_gives_its_message() -> None:
    with pytest.raises(LLMInvalidRequestError) as caught:
        render(_fixture(GEMMA), [M("user", "a"), M("user", "b")])
    assert caught.value.message == (
        "Conversation roles must alternate user/assistant/user/assistant/..."
    )
    with pytest.raises(LLMInvalidRequestError, match="roles must alternate"):
        render(
            _fixture(MISTRAL),
            [M("user", "a"), M("assistant", "b"), M("assistant", "c"), M("user", "d")],
        )


def test_a_template_that_does_not_parse_is_an_invalid_request() -> None:
    with pytest.raises(LLMInvalidRequestError, match="could not be parsed"):
        render(ChatTemplate("{% for m in messages %}{{ m.content }}", "", ""), [M("user", "x")])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('touch CANARY') }}",
        "{{ joiner.__init__.__globals__['__builtins__']['open']('CANARY', 'w') }}",
        "{{ messages.__class__ }}",
        "{% if ''.__class__ %}x{% endif %}",
        "{{ messages.append(1) }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ (messages|first).update(role='x') }}",
    ],
)
def test_sandbox_escapes_are_refused_and_run_nothing(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LLMInvalidRequestError, match="unsafe") as caught:
        render(ChatTemplate(source, "", ""), [M("user", "x")])
    assert isinstance(caught.value.__cause__, SecurityError)
    assert not (tmp_path / "CANARY").exists()


def test_end_of_turn_markers() -> None:
    assert "<end_of_turn>" in end_of_turn_markers(_fixture(GEMMA))
    assert "<|eot_id|>" in end_of_turn_markers(_fixture(LLAMA3))
    assert "<|im_end|>" in end_of_turn_markers(_fixture(CHATML))
    assert end_of_turn_markers(_fixture(MISTRAL)) == ("<eos>",)
    assert end_of_turn_markers(ChatTemplate(CHATML_TEMPLATE, "", "")) == ("<|im_end|>",)


def test_system_message_folded_into_the_next_for_templates_without_one() -> None:
    rendered = render(_fixture(GEMMA), [M("system", "Be brief."), M("user", "Hi")])
    assert rendered == "<start_of_turn>user\nBe brief.\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_leading_bos_is_stripped_only_when_the_tokenizer_adds_it() -> None:
    source = "{{ bos_token }}{{ messages[0].content }}"
    assert render(ChatTemplate(source, "<s>", "</s>"), [M("user", "x")]) == "x"
    no_add = ChatTemplate(source, "<s>", "</s>", add_bos=False)
    assert render(no_add, [M("user", "x")]) == "<s>x"


def test_load_template_from_a_file_or_agguf_string(tmp_path: Path) -> None:
    path = tmp_path / "t.jinja"
    path.write_bytes(b"{{ messages[0].content }}\r\n")
    assert load_template(str(path)) == "{{ messages[0].content }}\r\n"
    assert load_template("{{ bos_token }}{{ messages[0].content }}", "<s>") == (
        "{{ bos_token }}{{ messages[0].content }}"
    )
    assert load_template("chatml") == CHATML_TEMPLATE
    with pytest.raises(LLMInvalidRequestError, match="not found"):
        load_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(LLMInvalidRequestError, match="could not be parsed"):
        load_template("{% if %}")
    with pytest.raises(LLMInvalidRequestError, match="nope"):
        load_template("{{ raise_exception('nope') }}")


def test_an_empty_template_in_a_gguf_is_chatml_with_its_stop_marker(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_gguf(
        path,
        [
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, [b"a", b"b"]),
            ("tokenizer.chat_template", 8, ""),
        ],
    )
    clear_cache()
    template = template_from_gguf(path)
    assert template is not None and template.source == CHATML_TEMPLATE
    assert end_of_turn_markers(template)[0] == "<|im_end|>"
