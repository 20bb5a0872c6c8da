"""prompt_format and chat_template through LocalLLM, per-call and warm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gguf_files import write_gguf

from jazzmine.local import LLMInvalidRequestError, LocalLLM, MessagePart
from jazzmine.local.prompt import flatten

FIXTURES = Path(__file__).parent / "fixtures" / "templates"
GEMMA = str(FIXTURES / "google-gemma-2-2b-it.jinja")
QUESTION = [MessagePart("user", "What is the capital of France?")]


def test_auto_uses_the_spec_flattening_for_the_base_model(
    completion_bin: str, base_model_path: str
) -> None:
    llm = LocalLLM(binary_path=completion_bin, model=base_model_path, max_tokens=4)
    reply = llm.generate(QUESTION)
    assert reply.api_metrics is not None and reply.api_metrics["prompt_format"] == "flat"
    assert llm.build_request(QUESTION).prompt == flatten(QUESTION)


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


def test_auto_uses_the_models_own_template_with_llama_cpp(
    tmp_path: Path, completion_bin: str
) -> None:
    model = tmp_path / "chatty.gguf"
    template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}<|assistant|>"
    )
    write_gguf(
        model, [("general.architecture", 8, "llama"), ("tokenizer.chat_template", 8, template)]
    )
    templated = LocalLLM(binary_path=completion_bin, model=str(model))
    assert templated.build_request(QUESTION).prompt == (
        "<|user|>What is the capital of France?<|end|><|assistant|>"
    )
    flat = LocalLLM(binary_path=completion_bin, model=str(model), prompt_format="flat")
    assert flat.build_request(QUESTION).prompt == flatten(QUESTION)
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


def test_template_without_any_template_is_a_clear_error(
    completion_bin: str, base_model_path: str
) -> None:
    llm = LocalLLM(binary_path=completion_bin, model=base_model_path, prompt_format="template")
    with pytest.raises(LLMInvalidRequestError, match="chat_template="):
        llm.generate(QUESTION)
    with pytest.raises(ValueError):
        LocalLLM(binary_path=completion_bin, model=base_model_path, prompt_format="chatml-ish")


def test_a_template_that_raises_gives_its_message(
    completion_bin: str, base_model_path: str
) -> None:
    llm = LocalLLM(binary_path=completion_bin, model=base_model_path, chat_template=GEMMA)
    with pytest.raises(LLMInvalidRequestError, match="alternate"):
        llm.generate([MessagePart("user", "a"), MessagePart("user", "b")])


def test_a_sandbox_escape_in_a_template_is_refused(
    completion_bin: str, model_path: str, tmp_path: Path
) -> None:
    witness = tmp_path / "pwned"
    hostile = f"{{{{ cycler.__init__.__globals__.os.system('touch {witness}') }}}}"
    with pytest.raises(LLMInvalidRequestError):
        LocalLLM(binary_path=completion_bin, model=model_path, chat_template=hostile)
    assert not witness.exists()
