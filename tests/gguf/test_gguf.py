"""The GGUF header reader: a model's metadata, tokenizer settings and chat template.

The real models (the default SmolLM2 and the base Gemma 3) are read for what they are
known to carry; GGUF files written by ``gguf_files`` cover the reader's two ways past a
large string array (guessing where it ends, or walking it), a rewritten file, a
truncated one, and what is wrong with a path that is not a model.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.gguf_files import gguf_string, write_gguf

from jazzmine.local.gguf import header as gguf_header
from jazzmine.local.gguf import reader as gguf
from jazzmine.local.template.render import (
    ChatTemplate,
    clear_cache,
    end_of_turn_markers,
    render,
    template_from_gguf,
)
from jazzmine.local.types import MessagePart as M


def test_the_base_model_has_no_template_but_bos_and_eos(
    base_model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path = base_model_path
    decoded: list[bytes] = []
    hopped: list[int] = []
    real_decode, real_hop = gguf_header.decode, gguf_header.hop_strings

    def counting_decode(raw: bytes) -> str:
        decoded.append(raw)
        return real_decode(raw)

    def counting_hop(view: Any, offset: int, count: int) -> int:
        hopped.append(count)
        return real_hop(view, offset, count)

    monkeypatch.setattr(gguf_header, "decode", counting_decode)
    monkeypatch.setattr(gguf_header, "hop_strings", counting_hop)
    clear_cache()
    assert template_from_gguf(model_path) is None
    info = gguf.read_tokenizer_info(model_path)
    assert (info.bos_token, info.eos_token, info.add_bos, info.add_eos) == (
        "<bos>",
        "<eos>",
        True,
        False,
    )
    # the 262144-string vocabulary was neither decoded nor walked: only the keys read,
    # the 4 general.tags strings stepped over, and a hop to token ids 1 and 2
    assert len(decoded) < 16
    assert sum(hopped) <= 8
    # cached: a second read touches nothing
    decoded.clear()
    assert template_from_gguf(model_path) is None
    assert decoded == []


def test_the_default_model_carries_a_chatml_template(model_path: str) -> None:
    clear_cache()
    template = template_from_gguf(model_path)
    assert template is not None
    assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert "<|im_end|>" in end_of_turn_markers(template)
    rendered = render(template, [M("user", "Hi")])
    assert rendered.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_metadata_reader_still_reads_context_length(base_model_path: str, model_path: str) -> None:
    gguf.clear_cache()
    found = gguf.read_metadata(base_model_path, ["*.context_length", "general.architecture"])
    assert found == {"gemma3.context_length": 32768, "general.architecture": "gemma3"}
    found = gguf.read_metadata(model_path, ["*.context_length", "general.architecture"])
    assert found == {"llama.context_length": 8192, "general.architecture": "llama"}


def _vocabulary(size: int) -> list[bytes]:
    tokens = [f"tok{i}".encode() for i in range(size)]
    # near the end (past where the reader starts guessing), tokens that hold what the
    # next key could look like, one of them a whole well-formed key/value pair
    fake_pair = (
        gguf_string("tokenizer.chat_template") + struct.pack("<I", 8) + gguf_string("{{ 1 }}")
    )
    tokens[size - 10] = b"tokenizer.ggml.bos_token_id"
    tokens[size - 9] = fake_pair
    tokens[size - 8] = b"general.name" + fake_pair
    tokens[4000], tokens[size - 1] = b"<s>", "</s>\u00e9".encode()
    return tokens


@pytest.mark.parametrize("next_key", ["tokenizer.ggml.merges", "custom.after_tokens"])
@pytest.mark.parametrize("guess", [True, False], ids=["guessed", "walked"])
def test_synthetic_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, next_key: str, guess: bool
) -> None:
    if not guess:
        monkeypatch.setattr(gguf_header, "ANCHORS", ())
    size = 6000
    path = tmp_path / "m.gguf"
    write_gguf(
        path,
        [
            ("general.architecture", 8, "toy"),
            ("toy.context_length", 4, 4096),
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, _vocabulary(size)),
            (next_key, 9, [b"a b"] * 5000),
            ("tokenizer.ggml.bos_token_id", 4, 4000),
            ("tokenizer.ggml.eos_token_id", 4, size - 1),
            ("tokenizer.ggml.add_bos_token", 7, True),
            ("tokenizer.chat_template", 8, "{{ bos_token }}{{ messages[0].content }}"),
        ],
    )
    clear_cache()
    template = template_from_gguf(path)
    assert template == ChatTemplate(
        "{{ bos_token }}{{ messages[0].content }}", "<s>", "</s>\u00e9", True, False
    )
    assert gguf.read_metadata(path, ["*.context_length"]) == {"toy.context_length": 4096}
    # a rewritten file is read again
    write_gguf(path, [("tokenizer.ggml.tokens", 9, [b"x"])])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert template_from_gguf(path) is None


def test_truncated_gguf_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_gguf(path, [("tokenizer.ggml.tokens", 9, _vocabulary(5000))])
    path.write_bytes(path.read_bytes()[:20000])
    clear_cache()
    with pytest.raises(gguf.GGUFError):
        gguf.read_tokenizer_info(path)


def test_file_problem_names_what_is_wrong_with_a_model_path(
    tmp_path: Path, model_path: str
) -> None:
    assert gguf.file_problem(model_path) is None
    assert "does not exist" in (gguf.file_problem(str(tmp_path / "none.gguf")) or "")
    assert "is not a file" in (gguf.file_problem(str(tmp_path)) or "")
    text = tmp_path / "notes.gguf"
    text.write_text("plain text")
    assert "bad magic" in (gguf.file_problem(str(text)) or "")
