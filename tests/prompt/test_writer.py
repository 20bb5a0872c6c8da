"""How a call's prompt is written (``prompt/writer.py``): the spec's flattening or a chat
template, as ``prompt_format`` and ``chat_template`` choose, per call and warm.

Where only the prompt text is checked, the transport is the scripted ``MockTransport``
(which says it reaches llama.cpp, as the real binaries do) and the model a GGUF written
by ``gguf_files``: no build needed. The real build runs where the point is what a model
does with the prompt: the default model in its ChatML template, a supplied template in
both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.gguf_files import write_gguf
from helpers.real_calls import QUESTION

from jazzmine.local import LLMInvalidRequestError, LocalLLM, MessagePart, MockReply, MockTransport
from jazzmine.local.prompt.messages import flatten

FIXTURES = Path(__file__).parent.parent / "fixtures" / "templates"
GEMMA = str(FIXTURES / "google-gemma-2-2b-it.jinja")


def scripted(*chunks: str, runs_llama_cpp: bool = True) -> MockTransport:
    """A transport that replies ``chunks`` to every call and keeps the requests."""
    return MockTransport(lambda request: MockReply(chunks), runs_llama_cpp=runs_llama_cpp)


@pytest.fixture
def untemplated_gguf(tmp_path: Path) -> str:
    """A model with BOS and EOS but no chat template, as the base model (Gemma 3) is."""
    path = tmp_path / "base.gguf"
    write_gguf(
        path,
        [
            ("general.architecture", 8, "toy"),
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, [b"<bos>", b"<eos>", b"a"]),
            ("tokenizer.ggml.bos_token_id", 4, 0),
            ("tokenizer.ggml.eos_token_id", 4, 1),
        ],
    )
    return str(path)


def test_flat_is_the_spec_flattening() -> None:
    llm = LocalLLM(binary_path="/bin/true", model="llama-3-8b", prompt_format="flat")
    prompt = llm.build_request(
        [
            MessagePart("system", "Be brief."),
            MessagePart("user", "Hi"),
            MessagePart("assistant", "Hello"),
        ]
    ).prompt
    assert prompt == "System: Be brief.\nUser: Hi\nAssistant: Hello\nAssistant: "
    assert llm.model == "llama-3-8b"


def test_auto_uses_the_spec_flattening_for_a_model_without_a_template(
    untemplated_gguf: str,
) -> None:
    transport = scripted("Paris.")
    llm = LocalLLM(model=untemplated_gguf, max_tokens=4, transport=transport)
    reply = llm.generate(QUESTION)
    assert reply.api_metrics is not None and reply.api_metrics["prompt_format"] == "flat"
    assert llm.build_request(QUESTION).prompt == flatten(QUESTION)
    assert transport.requests[0].prompt == flatten(QUESTION)  # what the call was given


def test_auto_renders_the_default_models_chatml_template(
    completion_bin: str, model_path: str
) -> None:
    llm = LocalLLM(binary_path=completion_bin, model=model_path, max_tokens=4)
    reply = llm.generate(QUESTION)
    assert reply.api_metrics is not None and reply.api_metrics["prompt_format"] == "template"
    request = llm.build_request(QUESTION)
    assert request.prompt.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "<|im_end|>" in request.stop_sequences and "\nUser:" not in request.stop_sequences
    assert "<|im_" not in reply.text


def test_auto_uses_the_models_own_template_with_llama_cpp(tmp_path: Path) -> None:
    model = tmp_path / "chatty.gguf"
    template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}<|assistant|>"
    )
    write_gguf(
        model, [("general.architecture", 8, "llama"), ("tokenizer.chat_template", 8, template)]
    )
    templated = LocalLLM(model=str(model), transport=scripted())
    assert templated.build_request(QUESTION).prompt == (
        "<|user|>What is the capital of France?<|end|><|assistant|>"
    )
    flat = LocalLLM(model=str(model), prompt_format="flat", transport=scripted())
    assert flat.build_request(QUESTION).prompt == flatten(QUESTION)
    # A binary that is not llama.cpp gets the spec's text, whatever the GGUF carries.
    elsewhere = LocalLLM(model=str(model), transport=scripted(runs_llama_cpp=False))
    assert elsewhere.build_request(QUESTION).prompt == flatten(QUESTION)
    stops = templated.build_request(QUESTION).stop_sequences
    assert "<|end|>" in stops and "\nUser:" not in stops


@pytest.mark.parametrize("keep_alive", [None, -1])
def test_a_supplied_template_in_both_modes(
    completion_bin: str, base_model_path: str, keep_alive: int | None
) -> None:
    # Gemma's own chat template, given to the Gemma base model (which carries none).
    llm = LocalLLM(
        binary_path=completion_bin,
        model=base_model_path,
        max_tokens=24,
        seed=2,
        chat_template=GEMMA,
        prompt_format="template",
        keep_alive=keep_alive,
    )
    try:
        call = llm.build_request(QUESTION)
        turn = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
        assert call.prompt == turn + "<start_of_turn>model\n"
        reply = llm.generate(QUESTION)
        assert reply.api_metrics is not None and reply.api_metrics["prompt_format"] == "template"
        assert "<end_of_turn>" not in reply.text and "<start_of_turn>" not in reply.text
        streamed = "".join(llm.stream(QUESTION))
        assert streamed and "<end_of_turn>" not in streamed
    finally:
        llm.close()
    inline = LocalLLM(
        binary_path=completion_bin,
        model=base_model_path,
        max_tokens=24,
        seed=2,
        chat_template=Path(GEMMA).read_text(),
        keep_alive=keep_alive,
    )
    try:
        # The same template given as text builds the same prompt, in either mode.
        assert inline.build_request(QUESTION).prompt == call.prompt
        if keep_alive is not None:
            # A repeated prompt is served from the server's cache, and the base model's
            # near-tied logits on a chat template it was never trained on can then flip.
            return
        assert streamed == reply.text
        assert inline.generate(QUESTION).text == reply.text
    finally:
        inline.close()


def test_end_of_turn_markers_never_reach_the_reply(make_script: Callable[..., str]) -> None:
    script = make_script(
        "templated",
        """
        import sys
        if "--help" in sys.argv: print("usage: templated -p PROMPT"); sys.exit(0)
        sys.stdout.write("Paris.<end_of_turn>\\n<start_of_turn>user\\nAnd Spain?")
        """,
    )
    llm = LocalLLM(binary_path=script, model="x", chat_template=GEMMA)
    reply = llm.generate(QUESTION)
    assert reply.text == "Paris." and reply.finish_reason == "stop"


def test_template_without_any_template_is_a_clear_error(untemplated_gguf: str) -> None:
    transport = scripted("never")
    llm = LocalLLM(model=untemplated_gguf, prompt_format="template", transport=transport)
    with pytest.raises(LLMInvalidRequestError, match="chat_template="):
        llm.generate(QUESTION)
    assert transport.requests == []  # refused before anything ran
    with pytest.raises(ValueError):
        LocalLLM(model=untemplated_gguf, prompt_format="chatml-ish", transport=scripted())


def test_a_template_that_raises_gives_its_message(untemplated_gguf: str) -> None:
    transport = scripted("never")
    llm = LocalLLM(model=untemplated_gguf, chat_template=GEMMA, transport=transport)
    with pytest.raises(LLMInvalidRequestError, match="alternate"):
        llm.generate([MessagePart("user", "a"), MessagePart("user", "b")])
    assert transport.requests == []


def test_a_sandbox_escape_in_a_template_is_refused(untemplated_gguf: str, tmp_path: Path) -> None:
    witness = tmp_path / "pwned"
    hostile = f"{{{{ cycler.__init__.__globals__.os.system('touch {witness}') }}}}"
    with pytest.raises(LLMInvalidRequestError):
        LocalLLM(model=untemplated_gguf, chat_template=hostile, transport=scripted())
    assert not witness.exists()
