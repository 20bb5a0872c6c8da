"""Chat templates: the Python rendering must equal llama-server's own ``/apply-template``.

Each fixture template gets one real llama-server (the base model, Gemma 3 270M, on a
private Unix socket), shared by every conversation rendered against it and always stopped
afterwards. The base model carries no template of its own and its tokenizer adds a BOS,
so what is compared is the fixture template alone, with the BOS handling exercised.
Plain conversations, tools and tool history (calls, results, a second turn), and the
thinking switch (``chat_template_kwargs={"enable_thinking": ...}``) are all compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.gguf_files import write_gguf
from helpers.template_server import apply_template, same_as_server, template_server
from jinja2.exceptions import SecurityError

from jazzmine.local.errors import LLMInvalidRequestError
from jazzmine.local.gguf import reader as gguf
from jazzmine.local.template.engine import budget
from jazzmine.local.template.render import (
    CHATML_TEMPLATE,
    ChatTemplate,
    clear_cache,
    end_of_turn_markers,
    load_template,
    render,
    template_from_gguf,
)
from jazzmine.local.types import MessagePart as M

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"
# reasoning/ holds templates the tool-family tests (test_tools.py) do not list;
# tool_use/ holds tool-use variants, rendered from a model file (test_template_tools.py)
TEMPLATE_FILES = [
    *sorted(TEMPLATES.glob("*.jinja")),
    *sorted(TEMPLATES.glob("reasoning/*.jinja")),
    *sorted(TEMPLATES.glob("synthetic/*.jinja")),
]

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


# Tools as Tool.as_template_tool() writes them: quotes, non-ASCII and a float in the
# schema (templates print them with tojson), and one with no description.
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": 'The weather in a city, "now" or later (café)',
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    # llama.cpp writes floats with six significant digits: 1.0 is "1"
                    "days": {"type": "number", "minimum": 1.0, "maximum": 7.25},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "clock",
            "description": "",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# Mistral's templates want call ids of exactly nine alphanumerics
WEATHER = _call("call12345", "get_weather", '{"city": "Paris", "days": 2.0}')
CLOCK = _call("call67890", "clock", "{}")

TOOL_CONVERSATIONS: dict[str, list[M]] = {
    "tools_offered": [M("system", "Be brief."), M("user", "Weather in Paris?")],
    "call_and_result": [
        M("system", "Be brief."),
        M("user", "Weather in Paris?"),
        M("assistant", "", tool_calls=[WEATHER]),
        M("tool", '{"sky": "clear", "temp": 21.5}', tool_call_id="call12345", name="get_weather"),
    ],
    "second_turn": [
        M("user", "Weather in Paris?"),
        M("assistant", "", tool_calls=[WEATHER]),
        M("tool", "sunny, 21C", tool_call_id="call12345"),
        M("assistant", "It is sunny in Paris."),
        M("user", "And what time is it?"),
    ],
    "text_beside_call": [
        M("user", "Weather in Paris, and the time?"),
        M("assistant", "Let me check.", tool_calls=[WEATHER]),
        M("tool", "sunny", tool_call_id="call12345"),
    ],
    "two_calls": [
        M("user", "Weather in Paris, and the time?"),
        M("assistant", "", tool_calls=[WEATHER, CLOCK]),
        M("tool", "sunny", tool_call_id="call12345", name="get_weather"),
        M("tool", "12:00", tool_call_id="call67890", name="clock"),
    ],
    # a template reading arguments as an object cannot parse these: llama.cpp refuses
    "arguments_not_json": [
        M("user", "Weather?"),
        M("assistant", "", tool_calls=[_call("call12345", "get_weather", "{city: Paris}")]),
        M("tool", "sunny", tool_call_id="call12345"),
    ],
    # ends on a call: llama-server refuses to continue it
    "ends_on_a_call": [M("user", "Weather in Paris?"), M("assistant", "", tool_calls=[WEATHER])],
}


@pytest.fixture(scope="session")
def model_tokens(base_model_path: str) -> gguf.TokenizerInfo:
    return gguf.read_tokenizer_info(base_model_path)


@pytest.fixture(scope="module", params=TEMPLATE_FILES, ids=lambda p: p.stem)
def server(
    request: pytest.FixtureRequest, real_build: tuple[Path, Path], base_model_path: str
) -> Iterator[tuple[Path, httpx.Client]]:
    """A llama-server rendering with one fixture template, on a private Unix socket."""
    template_path: Path = request.param
    with template_server(
        real_build[0], base_model_path, "--chat-template-file", str(template_path)
    ) as client:
        yield template_path, client


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
    response = apply_template(client, messages, add_generation_prompt)
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
    response = apply_template(client, messages, True)
    same_as_server(response, _template(template_path, model_tokens), messages)


THINKING = [None, False, True]
THINKING_IDS = ["default", "nothink", "think"]


@pytest.mark.parametrize("enable_thinking", THINKING, ids=THINKING_IDS)
@pytest.mark.parametrize("with_tools", [True, False], ids=["tools", "notools"])
@pytest.mark.parametrize("conversation", list(TOOL_CONVERSATIONS))
def test_tools_and_tool_history_render_as_llama_server_does(
    server: tuple[Path, httpx.Client],
    model_tokens: gguf.TokenizerInfo,
    conversation: str,
    with_tools: bool,
    enable_thinking: bool | None,
) -> None:
    template_path, client = server
    messages = TOOL_CONVERSATIONS[conversation]
    tools = TOOLS if with_tools else None
    response = apply_template(client, messages, True, tools, enable_thinking)
    template = _template(template_path, model_tokens)
    same_as_server(response, template, messages, tools=tools, enable_thinking=enable_thinking)


@pytest.mark.parametrize("enable_thinking", [False, True], ids=["nothink", "think"])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_the_thinking_switch_renders_as_llama_server_does(
    server: tuple[Path, httpx.Client],
    model_tokens: gguf.TokenizerInfo,
    conversation: str,
    enable_thinking: bool,
) -> None:
    template_path, client = server
    messages = CONVERSATIONS[conversation]
    response = apply_template(client, messages, True, None, enable_thinking)
    template = _template(template_path, model_tokens)
    same_as_server(response, template, messages, enable_thinking=enable_thinking)


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


# llama.cpp's engine gives a template's lists append and pop (Kimi K2 queues its call
# ids in one); jinja2's immutable sandbox refuses both on every list
OWN_LIST = (
    "{%- set queue = namespace(ids=[]) -%}"
    "{%- for m in messages -%}{%- set _ = queue.ids.append(m.content) -%}{%- endfor -%}"
    "{{- queue.ids.pop(0) }}|{{ queue.ids | join(',') }}|{{ [1, 2, 3].pop() }}"
)


def test_a_template_appends_to_and_pops_from_its_own_lists() -> None:
    messages = [M("user", "a"), M("assistant", "b"), M("user", "c")]
    assert render(ChatTemplate(OWN_LIST, "", ""), messages) == "a|b,c|3"
    # the lists handed in are another matter: each rendering starts from the same
    assert render(ChatTemplate(OWN_LIST, "", ""), messages) == "a|b,c|3"


@pytest.mark.parametrize(
    "source",
    [
        "{{ messages.pop() }}",
        "{{ tools.append(1) }}",
        "{{ tools.pop(0) }}",
        "{% set m = messages %}{{ m.append(1) }}",
        "{% set ns = namespace(m=messages) %}{{ ns.m.pop() }}",
        "{{ messages[0].tool_calls.append(1) }}",
        "{{ messages[0].get('tool_calls').pop() }}",
        "{{ (tools|first).function.parameters.required.append('x') }}",
        "{% for t in tools %}{{ t.function.parameters.required.pop() }}{% endfor %}",
        "{{ messages.extend([1]) }}",
        "{{ [1].extend([2]) }}",
        "{{ [1].insert(0, 2) }}",
        "{{ {'a': 1}.update(b=2) }}",
    ],
)
def test_a_template_cannot_change_the_callers_messages_or_tools(source: str) -> None:
    """Only append and pop, only on a list the template built: llama.cpp's engine has
    no other method that changes a list or a dict."""
    messages = [M("user", "x", tool_calls=[WEATHER])]
    tools = [dict(TOOLS[0])]
    with pytest.raises(LLMInvalidRequestError, match="unsafe") as caught:
        render(ChatTemplate(source, "", ""), messages, tools=tools)
    assert isinstance(caught.value.__cause__, SecurityError)
    assert messages == [M("user", "x", tool_calls=[WEATHER])]
    assert tools == [TOOLS[0]]


GROWING = (
    "{%- set ns = namespace(items=[]) -%}"
    "{%- for i in range(n) -%}{%- set _ = ns.items.append(i) -%}{%- endfor -%}"
    "{{ ns.items | length }}"
)


@pytest.mark.parametrize(
    ("cap", "limit", "message"),
    [
        ("MAX_ITEMS", 1000, "a list of that many items"),
        ("MAX_BUILT", 1000, "built more than 1000"),
        ("MAX_STEPS", 1000, "more than 1000 steps"),
    ],
)
def test_a_template_growing_its_own_list_is_held_to_the_budget(
    cap: str, limit: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "{% set n = messages[0].content | int %}" + GROWING
    template = ChatTemplate(source, "", "")
    assert render(template, [M("user", "800")]) == "800"
    monkeypatch.setattr(budget, cap, limit)
    assert render(template, [M("user", "200")]) == "200"
    with pytest.raises(LLMInvalidRequestError, match=message):
        render(template, [M("user", "5000")])


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
