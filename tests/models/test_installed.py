"""``jazzmine models``: what is on disk (set-up's, pulled, the Hub cache), described from
the GGUF header, as a table or JSON, and ``models rm``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.gguf_files import write_gguf

from jazzmine.local.cli.main import main
from jazzmine.local.models import installed, store

CHATML_TOOLS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}{% endfor %}</tools>"
    "<tool_call>{% endif %}"
)


def gguf(path: Path, template: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = [("general.architecture", 8, "qwen2"), ("qwen2.context_length", 4, 32768)]
    if template is not None:
        pairs.append(("tokenizer.chat_template", 8, template))
    write_gguf(path, pairs)
    return path


def test_models_lists_every_source_and_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    gguf(tmp_path / "cache" / "jazzmine" / "models" / "base.gguf", None)
    repo = tmp_path / "hub" / "models--acme--chat-GGUF"
    blob = gguf(repo / "blobs" / "abc", CHATML_TOOLS)
    snapshot = repo / "snapshots" / "c0ffee"
    snapshot.mkdir(parents=True)
    (snapshot / "chat-Q4_K_M.gguf").symlink_to(blob)
    (snapshot / "other-Q8_0.gguf").symlink_to(gguf(repo / "blobs" / "def", ""))
    size = blob.stat().st_size
    local = str(snapshot / "chat-Q4_K_M.gguf")
    store.record(
        store.Pulled(
            "acme/chat-GGUF:Q4_K_M",
            "acme/chat-GGUF",
            "c0ffee",
            (store.PulledFile("chat-Q4_K_M.gguf", local, size, "x"),),
        )
    )
    assert main(["models", "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert set(listed) == {
        "base.gguf",
        "hf:acme/chat-GGUF:Q4_K_M",
        "acme/chat-GGUF/other-Q8_0.gguf",
    }
    chat = listed["hf:acme/chat-GGUF:Q4_K_M"]
    assert (chat["source"], chat["size"], chat["architecture"], chat["context"]) == (
        "pulled",
        size,
        "qwen2",
        32768,
    )
    assert (chat["template"], chat["tools"]) == ("hermes", True)
    assert listed["base.gguf"]["template"] == "none" and listed["base.gguf"]["source"] == "setup"
    assert listed["acme/chat-GGUF/other-Q8_0.gguf"]["source"] == "hub cache"
    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "name",
        "size",
        "architecture",
        "context",
        "template",
        "tools",
        "thinking",
        "source",
    ]
    assert any(line.startswith("hf:acme/chat-GGUF:Q4_K_M") and "hermes" in line for line in table)
    assert main(["models", "rm", "hf:acme/chat-GGUF:Q4_K_M"]) == 0
    assert not blob.exists() and not (snapshot / "chat-Q4_K_M.gguf").exists()
    assert store.find("acme/chat-GGUF:Q4_K_M") is None
    assert main(["models", "rm", "nothing"]) == 1
    assert "no model named 'nothing'" in capsys.readouterr().err
    assert [e["name"] for e in installed.installed()] == [
        "base.gguf",
        "acme/chat-GGUF/other-Q8_0.gguf",
    ]
