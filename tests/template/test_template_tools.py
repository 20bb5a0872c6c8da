"""A model's tool-use template, and the tool fields as a template sees them.

The renderings of tools and tool history against the real llama-server, for every
fixture template, are in test_template.py; here is what only a model file can show
(``tokenizer.chat_template.tool_use``, which llama-server reads from the GGUF and never
from --chat-template-file), and the checks that need no server.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from helpers.gguf_files import gguf_string, write_gguf
from helpers.template_server import apply_template, same_as_server, template_server
from test_template import TEMPLATES, TOOL_CONVERSATIONS, TOOLS, WEATHER

from jazzmine.local.errors import LLMInvalidRequestError
from jazzmine.local.template.caps import capabilities
from jazzmine.local.template.render import (
    TOOL_USE_KEY,
    ChatTemplate,
    clear_cache,
    render,
    template_from_gguf,
    tool_template,
)
from jazzmine.local.types import MessagePart as M

HERMES_TOOL_USE = TEMPLATES / "tool_use" / "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja"

# GGUF value sizes by type id (8 is a string, 9 an array)
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, pos: int, value_type: int) -> int:
    if value_type == 8:
        return pos + 8 + struct.unpack_from("<Q", data, pos)[0]
    if value_type == 9:
        item_type, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item_type in _SCALAR_SIZES:
            return pos + count * _SCALAR_SIZES[item_type]
        for _ in range(count):
            pos = _skip_value(data, pos, item_type)
        return pos
    return pos + _SCALAR_SIZES[value_type]


def _with_tool_use(source: Path, dest: Path, tool_use: str) -> None:
    """A copy of the GGUF model ``source`` with a tool-use template added to its header.

    The new key/value goes after the others; the tensor table follows unchanged (its
    offsets are relative to the data section) and the data section is re-aligned.
    """
    data = source.read_bytes()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    pos, alignment = 24, 32
    for _ in range(n_kv):
        key_length = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8 : pos + 8 + key_length]
        pos += 8 + key_length
        (value_type,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == b"general.alignment":
            (alignment,) = struct.unpack_from("<I", data, pos)
        pos = _skip_value(data, pos, value_type)
    kv_end = pos
    for _ in range(n_tensors):
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8
    infos_end = pos
    data_start = infos_end + (-infos_end % alignment)
    added = gguf_string(TOOL_USE_KEY) + struct.pack("<I", 8) + gguf_string(tool_use)
    head = bytearray(struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 1))
    head += data[24:kv_end] + added + data[kv_end:infos_end]
    head += b"\x00" * (-len(head) % alignment)
    with open(dest, "wb") as out:
        out.write(head)
        out.write(memoryview(data)[data_start:])


def test_a_models_tool_use_template_renders_when_tools_are_given(
    real_build: tuple[Path, Path], model_path: str, tmp_path: Path
) -> None:
    model = tmp_path / "with-tool-use.gguf"
    tool_use = HERMES_TOOL_USE.read_text(encoding="utf-8")
    _with_tool_use(Path(model_path), model, tool_use)
    clear_cache()
    template = template_from_gguf(model)
    assert template is not None and template.tool_use_source == tool_use
    own = template_from_gguf(model_path)
    assert own is not None and template.source == own.source
    # the variant must make a difference for this test to show it is used
    plain = ChatTemplate(template.source, template.bos_token, template.eos_token)
    messages = TOOL_CONVERSATIONS["call_and_result"]
    assert render(template, messages, tools=TOOLS) != render(plain, messages, tools=TOOLS)

    with template_server(real_build[0], str(model)) as client:
        for name, messages in TOOL_CONVERSATIONS.items():
            for tools in (TOOLS, None):
                response = apply_template(client, messages, True, tools)
                try:
                    same_as_server(response, template, messages, tools=tools)
                except AssertionError as exc:
                    raise AssertionError(f"{name}, tools={tools is not None}") from exc


def test_the_tool_use_template_comes_from_the_gguf_header(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_gguf(
        path,
        [
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, [b"a", b"b"]),
            ("tokenizer.chat_template", 8, "{{ messages[0].content }}"),
            (TOOL_USE_KEY, 8, "{{ tools[0].function.name }}: {{ messages[0].content }}"),
        ],
    )
    clear_cache()
    template = template_from_gguf(path)
    assert template is not None
    assert template.tool_use_source == "{{ tools[0].function.name }}: {{ messages[0].content }}"
    assert tool_template(template).source == template.tool_use_source
    plain = ChatTemplate("x", "", "")
    assert tool_template(plain) is plain
    hello = [M("user", "hello")]
    assert render(template, hello) == "hello"
    assert render(template, hello, tools=[]) == "hello"
    assert render(template, hello, tools=TOOLS) == "get_weather: hello"


@pytest.mark.parametrize("default", [None, "", "chatml"])
def test_a_model_with_only_a_tool_use_template_renders_with_it(
    tmp_path: Path, default: str | None
) -> None:
    # common_chat_templates_init: a missing, empty or "chatml" template falls back on
    # the tool-use one before ChatML
    path = tmp_path / "m.gguf"
    pairs: list[tuple[str, int, Any]] = [
        ("tokenizer.ggml.model", 8, "gpt2"),
        ("tokenizer.ggml.tokens", 9, [b"a", b"b"]),
        (TOOL_USE_KEY, 8, "[{{ messages[0].content }}]"),
    ]
    if default is not None:
        pairs.append(("tokenizer.chat_template", 8, default))
    write_gguf(path, pairs)
    clear_cache()
    template = template_from_gguf(path)
    assert template is not None
    assert render(template, [M("user", "hi")]) == "[hi]"


def _fixture(name: str) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), "<bos>", "<eos>")


def test_arguments_become_an_object_only_for_templates_that_read_one() -> None:
    # Qwen 2.5 prints arguments with tojson: as text they would come out quoted
    qwen = _fixture("Qwen-Qwen2.5-7B-Instruct.jinja")
    assert capabilities(qwen).object_arguments
    prompt = render(qwen, TOOL_CONVERSATIONS["call_and_result"], tools=TOOLS)
    first_key = next(iter(json.loads(WEATHER["function"]["arguments"])))
    assert f'"arguments": {{"{first_key}": ' in prompt
    assert '"arguments": "' not in prompt
    # a template that never reads tool calls leaves them as they are (and ignores them)
    smol = _fixture("HuggingFaceTB-SmolLM3-3B.jinja")
    caps = capabilities(smol)
    assert not caps.supports_tool_calls and not caps.object_arguments
    bad = [
        M("user", "x"),
        M("assistant", "", tool_calls=[{**WEATHER, "function": {"name": "f", "arguments": "{"}}]),
        M("tool", "y", tool_call_id="call12345"),
    ]
    render(smol, bad)
    with pytest.raises(LLMInvalidRequestError, match="Failed to parse tool call arguments"):
        render(qwen, bad)


def test_a_call_given_arguments_as_an_object_is_written_as_compact_json() -> None:
    # llama.cpp keeps arguments as text: an object is dumped compactly, as nlohmann does
    source = "{{ messages[1].tool_calls[0].function.arguments }}"
    call = {"type": "function", "function": {"name": "f", "arguments": {"a": [1, "é"]}}}
    messages = [M("user", "x"), M("assistant", "", tool_calls=[call]), M("user", "y")]
    assert render(ChatTemplate(source, "", ""), messages) == '{"a":[1,"é"]}'


def test_malformed_tools_and_calls_are_invalid_requests() -> None:
    template = _fixture("Qwen-Qwen2.5-7B-Instruct.jinja")
    hello = [M("user", "hello")]
    with pytest.raises(LLMInvalidRequestError, match="type must be 'function'"):
        render(template, hello, tools=[{"type": "web", "function": {"name": "x"}}])
    with pytest.raises(LLMInvalidRequestError, match="function name"):
        render(template, hello, tools=[{"type": "function", "function": {}}])
    no_name = [M("user", "x"), M("assistant", "", tool_calls=[{"function": {}}]), M("user", "y")]
    with pytest.raises(LLMInvalidRequestError, match="function name"):
        render(template, no_name)
    call = {"function": {"name": "f"}}
    no_args = [M("user", "x"), M("assistant", "", tool_calls=[call]), M("user", "y")]
    with pytest.raises(LLMInvalidRequestError, match="without arguments"):
        render(template, no_args)


def test_a_tool_use_template_that_does_not_parse_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_gguf(
        path,
        [
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, [b"a", b"b"]),
            ("tokenizer.chat_template", 8, "{{ messages[0].content }}"),
            (TOOL_USE_KEY, 8, "{% if %}"),
        ],
    )
    clear_cache()
    template = template_from_gguf(path)
    assert template is not None and template.tool_use_source is None
    assert render(template, [M("user", "hello")], tools=TOOLS) == "hello"
