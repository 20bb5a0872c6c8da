"""``jazzmine pull`` against a Hub stand-in on loopback (``helpers.hub_standin``): the
file chosen as llama.cpp's ``-hf`` chooses, checked, resumed after a cut, refused when
its sha256 is wrong, split GGUFs whole, the errors that name what is missing, and
``LocalLLM(model="hf:...")`` finding the copy without the network."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.gguf_files import write_gguf
from helpers.hub_standin import HubFile, HubStandIn

from jazzmine.local import (
    LLMConnectionError,
    LLMError,
    LLMInvalidRequestError,
    LocalLLM,
    MessagePart,
)
from jazzmine.local.cli.main import main
from jazzmine.local.models import choose, hub, store
from jazzmine.local.models.installed import installed


def tiny_gguf(tmp_path: Path, name: str, filler: int = 0) -> bytes:
    path = tmp_path / name
    pairs = [("general.architecture", 8, "llama"), ("llama.context_length", 4, 2048)]
    pairs.append(
        ("tokenizer.chat_template", 8, "{% for m in messages %}{{ m.content }}{% endfor %}")
    )
    write_gguf(path, pairs)
    return path.read_bytes() + b"\x00" * filler


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    with HubStandIn() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for variable in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
        yield server


def listing(*names: str) -> list[str]:
    return list(names)


# ---------- the choice, as llama.cpp's -hf makes it ----------
def test_the_quant_rule_is_llama_cpp_s() -> None:
    files = listing(
        "README.md",
        "mmproj-model-Q4_K_M.gguf",
        "model-Q2_K.gguf",
        "model-Q8_0.gguf",
        "model-q4_k_m.gguf",
        "big/model-Q6_K-00002-of-00003.gguf",
        "big/model-Q6_K-00001-of-00003.gguf",
        "big/model-Q6_K-00003-of-00003.gguf",
    )
    assert choose.best_model(files, "") == "model-q4_k_m.gguf"  # Q4_K_M first, any case
    assert choose.best_model(files, "Q8_0") == "model-Q8_0.gguf"
    assert choose.best_model(files, "Q6_K") == "big/model-Q6_K-00001-of-00003.gguf"
    assert choose.best_model(files, "IQ1_S") is None
    assert choose.best_model(["a-Q2_K.gguf", "b-Q5_0.gguf"], "") == "a-Q2_K.gguf"
    assert choose.best_model(["x-Q8_0.gguf", "x-Q4_K_M.gguf"], "") == "x-Q4_K_M.gguf"
    assert choose.with_parts(files, "big/model-Q6_K-00001-of-00003.gguf") == [
        f"big/model-Q6_K-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]
    assert choose.parse("o/n:q4_k_m").name == "o/n:Q4_K_M"
    assert choose.parse("hf:o/n/sub/f.gguf") == choose.Spec("o/n", file="sub/f.gguf")
    for bad in ("noslash", "o/n:", "a/b/c", "o/n:Q4:Q8"):
        with pytest.raises(LLMInvalidRequestError):
            choose.parse(bad)


# ---------- pulls ----------
def test_a_pull_is_checked_recorded_and_found_offline(standin: HubStandIn, tmp_path: Path) -> None:
    data = tiny_gguf(tmp_path, "t.gguf")
    standin.add(
        "acme/tiny-GGUF", [HubFile("tiny-Q8_0.gguf", data), HubFile("tiny-Q4_K_M.gguf", data)]
    )
    pulled = hub.pull("acme/tiny-GGUF")
    assert pulled.name == "acme/tiny-GGUF" and [f.path for f in pulled.files] == [
        "tiny-Q4_K_M.gguf"
    ]
    assert Path(pulled.model_path).read_bytes() == data
    assert str(tmp_path / "hub") in pulled.model_path  # huggingface_hub's cache
    served = standin.served
    # Found from the manifest alone: the stand-in sees no request.
    asked = len(standin.requests)
    assert store.resolve("hf:acme/tiny-GGUF") == pulled.model_path
    llm = LocalLLM(model="hf:acme/tiny-GGUF")
    assert llm.model_path == pulled.model_path and llm.model == "hf:acme/tiny-GGUF"
    assert len(standin.requests) == asked and standin.served == served


def test_a_model_not_pulled_names_the_command(standin: HubStandIn) -> None:
    with pytest.raises(
        store.ModelNotPulledError, match="jazzmine pull acme/other:Q5_K_M"
    ) as caught:
        LocalLLM(model="hf:acme/other:q5_k_m")
    assert isinstance(caught.value, LLMInvalidRequestError)
    assert standin.requests == []  # never the network at call time


def test_a_cut_download_resumes_without_starting_over(standin: HubStandIn, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB chunks: a cut keeps the whole chunks received and
    # asks for the rest with Range (the partial chunk in its buffer is fetched again).
    chunk = 10 * 1024 * 1024
    data = tiny_gguf(tmp_path, "t.gguf", filler=3 * chunk)
    standin.add("acme/cut", [HubFile("cut-Q4_K_M.gguf", data)])
    standin.cut_at = 0.5
    pulled = hub.pull("acme/cut:Q4_K_M")
    assert Path(pulled.model_path).read_bytes() == data
    ranges = [
        r for method, path, r in standin.requests if path.startswith("/cdn/") and method == "GET"
    ]
    cut, resumed = len(data) // 2, chunk
    assert ranges == [None, f"bytes={resumed}-"], ranges
    # The file once plus the partial chunk, not once and a half.
    assert standin.served == cut + len(data) - resumed < len(data) * 1.25


def test_a_pull_that_failed_leaves_no_partial_file_and_is_said_plainly(
    standin: HubStandIn, tmp_path: Path
) -> None:
    """huggingface_hub 2.x resumes within one call only: when the call fails it deletes
    its partial file, so the next pull fetches the whole file (documented in README)."""
    chunk = 10 * 1024 * 1024
    data = tiny_gguf(tmp_path, "t.gguf", filler=3 * chunk)
    standin.add("acme/again", [HubFile("again-Q4_K_M.gguf", data)])
    standin.cut_at, standin.unavailable_after_cut = 0.5, 1
    with pytest.raises(LLMConnectionError, match=r"503.*run it again") as caught:
        hub.pull("acme/again")
    assert isinstance(caught.value, LLMError)
    assert [p for p in (tmp_path / "hub").rglob("*incomplete*")] == []
    assert [p for p in (tmp_path / "hub").rglob("blobs/*") if not p.name.endswith(".lock")] == []
    with pytest.raises(store.ModelNotPulledError):
        store.resolve("hf:acme/again")
    first = standin.served
    pulled = hub.pull("acme/again")
    assert Path(pulled.model_path).read_bytes() == data
    assert standin.served - first == len(data)


def test_a_wrong_sha256_is_refused_and_the_file_deleted(
    standin: HubStandIn, tmp_path: Path
) -> None:
    data = tiny_gguf(tmp_path, "t.gguf")
    standin.add("acme/bad", [HubFile("bad-Q4_K_M.gguf", data, listed_sha256="ab" * 32)])
    with pytest.raises(hub.ChecksumError, match="deleted") as caught:
        hub.pull("acme/bad:Q4_K_M")
    assert "ab" * 32 in str(caught.value)
    assert [p for p in (tmp_path / "hub").rglob("*.gguf") if p.exists()] == []
    assert not any((tmp_path / "hub").rglob("blobs/*" + "ab" * 32))
    with pytest.raises(store.ModelNotPulledError):
        store.resolve("hf:acme/bad:Q4_K_M")


def test_a_split_gguf_comes_whole(standin: HubStandIn, tmp_path: Path) -> None:
    parts = [HubFile(f"m-Q4_K_M-0000{i}-of-00003.gguf", bytes([i]) * 1000) for i in (2, 1, 3)]
    standin.add("acme/split", [*parts, HubFile("m-Q8_0.gguf", b"x")])
    pulled = hub.pull("acme/split")
    assert [f.path for f in pulled.files] == [f"m-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert pulled.model_path.endswith("-00001-of-00003.gguf")
    assert {os.path.dirname(f.local) for f in pulled.files} == {os.path.dirname(pulled.model_path)}


def test_a_named_file(standin: HubStandIn, tmp_path: Path) -> None:
    data = tiny_gguf(tmp_path, "t.gguf")
    standin.add("acme/files", [HubFile("sub/one.gguf", data)])
    assert hub.pull("acme/files/sub/one.gguf").files[0].path == "sub/one.gguf"
    assert LocalLLM(model="hf:acme/files/sub/one.gguf").model_path.endswith("sub/one.gguf")  # type: ignore[union-attr]
    with pytest.raises(hub.PullError, match=r"no file sub/two\.gguf"):
        hub.pull("acme/files/sub/two.gguf")


def test_missing_repo_and_quant_are_named(standin: HubStandIn, tmp_path: Path) -> None:
    with pytest.raises(hub.PullError, match="no repository acme/nothing"):
        hub.pull("acme/nothing:Q4_K_M")
    standin.add("acme/q", [HubFile("q-Q8_0.gguf", b"x"), HubFile("q-Q2_K.gguf", b"y")])
    with pytest.raises(
        hub.PullError, match=r"acme/q has no IQ2_XS quantisation; its GGUFs: Q2_K, Q8_0"
    ):
        hub.pull("acme/q:iq2_xs")


def test_a_gated_repo_needs_a_token(
    standin: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_gguf(tmp_path, "t.gguf")
    standin.add("acme/gated", [HubFile("g-Q4_K_M.gguf", data)], gated=True)
    with pytest.raises(hub.PullError, match=r"acme/gated is gated.*HF_TOKEN"):
        hub.pull("acme/gated")
    monkeypatch.setenv("HF_TOKEN", standin.token)
    assert Path(hub.pull("acme/gated").model_path).read_bytes() == data


def test_the_command_line(
    standin: HubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_gguf(tmp_path, "t.gguf")
    standin.add("acme/cli", [HubFile("cli-Q4_K_M.gguf", data)])
    assert main(["pull", "acme/cli"]) == 0
    assert "hf:acme/cli" in capsys.readouterr().out
    assert main(["pull", "acme/none"]) == 1
    assert "no repository acme/none" in capsys.readouterr().err


def test_pull_of_the_default_model_resumed_and_used(
    standin: HubStandIn, model_path: str, completion_bin: str
) -> None:
    """The issue's "done means": a 98 MB model pulled, cut at half and resumed, checked,
    listed, used by LocalLLM(model="hf:..."), removed."""
    data = Path(model_path).read_bytes()
    standin.add(
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        [HubFile("smollm2-135m-instruct-q4_1.gguf", data)],
    )
    standin.cut_at = 0.5
    started = time.monotonic()
    pulled = hub.pull("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1")
    elapsed = time.monotonic() - started
    assert len(data) <= standin.served < len(data) + 10 * 1024 * 1024  # no restart
    name = "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1"
    llm = LocalLLM(binary_path=completion_bin, model=name, max_tokens=8, seed=1)
    assert llm.model_path == pulled.model_path
    assert llm.generate([MessagePart("user", "What is the capital of France?")]).text
    listed = {entry["name"]: entry for entry in installed()}
    assert listed[name]["size"] == len(data) and listed[name]["architecture"] == "llama"
    assert listed[name]["template"] == "hermes" or listed[name]["template"]
    print(f"\npulled {len(data)} bytes, cut at half, {standin.served} served, {elapsed:.1f} s")
    assert main(["models", "rm", name]) == 0
    assert not os.path.exists(pulled.model_path)
    with pytest.raises(store.ModelNotPulledError):
        LocalLLM(binary_path=completion_bin, model=name)
