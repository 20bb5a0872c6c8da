"""A template's reasoning block learned by rendering it (jazzmine.local.template.thinking),
and calls that read, constrain and budget the thinking in that format (MockTransport)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jazzmine.local import LocalLLM, MessagePart
from jazzmine.local.mock import MockReply, MockTransport, RunOutcome, reply
from jazzmine.local.request import GenerationRequest
from jazzmine.local.template.engine.source import ChatTemplate
from jazzmine.local.template.thinking import ThinkingFormat, thinking_format

# Qwen3.5's shape: the generation prompt opens "<think>\n" (closed and empty with
# thinking off); a past turn writes its reasoning between the markers, or an empty block.
OPENED = """\
{%- for m in messages -%}
<|im_start|>{{ m.role }}
{% if m.role == 'assistant' -%}
{%- if m.reasoning_content -%}<think>
{{ m.reasoning_content }}
</think>

{% else %}<think>

</think>

{% endif -%}
{%- endif -%}
{{ m.content }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% else %}<think>
{% endif -%}
{%- endif -%}"""

# Cohere's shape: the model opens the block itself, and the answer is wrapped
WRAPPED = """\
{%- for m in messages -%}
<|TURN|>{{ m.role }}:
{%- if m.role == 'assistant' -%}
{%- if m.reasoning_content -%}
<|START_THINKING|>{{ m.reasoning_content }}<|END_THINKING|>
{%- endif -%}
<|START_TEXT|>{{ m.content }}<|END_TEXT|>
{%- else -%}
{{ m.content }}
{%- endif -%}
<|END_OF_TURN_TOKEN|>
{%- endfor -%}
{%- if add_generation_prompt -%}<|TURN|>assistant:{%- endif -%}"""

# Magistral's markers, written by the model
BRACKETS = """\
{%- for m in messages -%}
{%- if m.role == 'user' -%}[INST]{{ m.content }}[/INST]
{%- else -%}
{%- if m.reasoning_content -%}[THINK]{{ m.reasoning_content }}[/THINK]{%- endif -%}
{{ m.content }}</s>
{%- endif -%}
{%- endfor -%}"""

# Gemma 4's shape: reasoning is shown only in a turn that calls a tool
CALL_ONLY = """\
{%- for m in messages -%}
<|turn>{{ 'model' if m.role == 'assistant' else m.role }}
{% if m.tool_calls -%}
{%- if m.reasoning_content -%}<|channel>thought
{{ m.reasoning_content }}<channel|>{%- endif -%}
{%- for c in m.tool_calls -%}<|tool_call>{{ c.function.name }}<tool_call|>{%- endfor -%}
{%- else -%}{{ m.content }}{%- endif -%}
<turn|>
{% endfor -%}
{%- if add_generation_prompt -%}<|turn>model
{% endif -%}"""

# Hunyuan's shape: thinking on by another switch; by default the prompt closes an
# empty block
CLOSES = """\
{%- for m in messages -%}
<|{{ m.role }}|>
{%- if m.role == 'assistant' -%}<think>{{ m.reasoning_content or '' }}</think>{%- endif -%}
{{ m.content }}<|eot|>
{%- endfor -%}
{%- if add_generation_prompt -%}<|assistant|>
{%- if effort is defined and effort == 'high' -%}<think>{%- else -%}<think></think>{%- endif -%}
{%- endif -%}"""

PLAIN = """\
{%- for m in messages -%}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""


def fmt(source: str) -> ThinkingFormat | None:
    return thinking_format(ChatTemplate(source, "<s>", "</s>"))


def test_a_block_the_generation_prompt_opens() -> None:
    found = fmt(OPENED)
    assert found is not None
    assert (found.start, found.end) == ("<think>", "</think>")
    assert found.prompt_opening == "<|im_start|>assistant\n<think>"
    assert found.closing == "\n</think>\n\n"
    assert (found.answer_start, found.answer_end, found.prompt_closes) == ("", "", False)


def test_a_block_the_model_opens_and_a_wrapped_answer() -> None:
    found = fmt(WRAPPED)
    assert found is not None
    assert (found.start, found.end) == ("<|START_THINKING|>", "<|END_THINKING|>")
    assert (found.answer_start, found.answer_end) == ("<|START_TEXT|>", "<|END_TEXT|>")
    assert found.prompt_opening == ""


def test_bracket_markers() -> None:
    found = fmt(BRACKETS)
    assert found is not None
    assert (found.start, found.end, found.prompt_opening) == ("[THINK]", "[/THINK]", "")


def test_reasoning_shown_only_beside_a_call() -> None:
    found = fmt(CALL_ONLY)
    assert found is not None
    assert (found.start, found.end) == ("<|channel>thought", "<channel|>")


def test_a_prompt_that_closes_an_empty_block() -> None:
    found = fmt(CLOSES)
    assert found is not None
    assert (found.start, found.end, found.prompt_closes) == ("<think>", "</think>", True)
    assert found.prompt_opening == ""


def test_a_template_that_writes_no_reasoning() -> None:
    assert fmt(PLAIN) is None


# ---------- calls read, constrain and budget the thinking in the template's format ----------

ASK = [MessagePart("user", "What is 2 + 2?")]


def llm_on(tmp_path: Path, source: str, handler: object, **options: object) -> LocalLLM:
    path = tmp_path / "template.jinja"
    path.write_text(source, encoding="utf-8")
    return LocalLLM(transport=MockTransport(handler), chat_template=str(path), **options)  # type: ignore[arg-type]


def every_way(llm: LocalLLM, **options: object) -> tuple[str | None, str, str, str]:
    """(reasoning, text) of generate, and the reasoning and text events of a stream."""
    response = llm.generate(ASK, **options)  # type: ignore[arg-type]
    events = list(llm.stream(ASK, **options).events())  # type: ignore[arg-type]
    thought = "".join(str(t) for kind, t in events if kind == "reasoning")
    said = "".join(str(t) for kind, t in events if kind == "text")
    return response.reasoning, response.text, thought, said


def pieces(text: str) -> MockReply:
    return reply(*(text[i : i + 3] for i in range(0, len(text), 3)))


@pytest.mark.parametrize(
    ("source", "written", "thought", "answer"),
    [
        (OPENED, "Let me add.\n</think>\n\nIt is 4.", "Let me add.", "It is 4."),
        (
            WRAPPED,
            "<|START_THINKING|>Let me add.<|END_THINKING|><|START_TEXT|>It is 4.<|END_TEXT|>",
            "Let me add.",
            "It is 4.",
        ),
        (BRACKETS, "[THINK]Let me add.[/THINK]It is 4.", "Let me add.", "It is 4."),
        (CALL_ONLY, "<|channel>thought\nLet me add.<channel|>It is 4.", "Let me add.", "It is 4."),
        (CLOSES, "Let me add.</think>It is 4.", "Let me add.", "It is 4."),
        (CLOSES, "It is 4.", None, "It is 4."),
    ],
)
def test_the_reply_splits_whole_and_streamed(
    tmp_path: Path, source: str, written: str, thought: str | None, answer: str
) -> None:
    llm = llm_on(tmp_path, source, lambda request: pieces(written))
    assert every_way(llm) == (thought, answer, thought or "", answer)


def test_reasoning_off_closes_the_block_and_the_reply_is_the_answer(tmp_path: Path) -> None:
    llm = llm_on(tmp_path, OPENED, lambda request: reply("It is 4."))
    request = llm.build_request(ASK, reasoning=False)
    assert request.prompt.endswith("<think>\n\n</think>\n\n")
    assert every_way(llm, reasoning=False) == (None, "It is 4.", "", "It is 4.")


def test_a_response_format_after_a_block_the_prompt_opened(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt_ = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    written = 'Two and two.\n</think>\n\n{"n": 4}'
    llm = llm_on(tmp_path, OPENED, lambda request: pieces(written))
    request = llm.build_request(ASK, response_format=fmt_)
    # the grammar lets the model finish its thinking, then holds the answer to the schema
    assert request.grammar is not None and request.json_schema is None
    assert '"</think>"' in request.grammar and '"<think>"' not in request.grammar
    response = llm.generate(ASK, response_format=fmt_)
    assert response.reasoning == "Two and two."
    assert json.loads(response.text) == {"n": 4}


def test_a_budget_closes_the_block_as_the_template_writes_it(tmp_path: Path) -> None:
    def handler(request: GenerationRequest) -> MockReply:
        if request.prompt.endswith("assistant:"):
            return MockReply(
                chunks=("<|START_THINKING|>I add two",),
                outcome=RunOutcome(exit_code=0, completion_tokens=5, hit_token_limit=True),
            )
        return reply("It is 4.<|END_TEXT|>")

    llm = llm_on(tmp_path, WRAPPED, handler, max_tokens=40)
    transport = llm.transport
    assert isinstance(transport, MockTransport)
    response = llm.generate(ASK, reasoning=5)
    thinking, answering = transport.requests
    assert thinking.grammar is not None
    assert thinking.grammar.startswith('root ::= "<|START_THINKING|>"')
    assert answering.prompt == (
        thinking.prompt + "<|START_THINKING|>I add two<|END_THINKING|><|START_TEXT|>"
    )
    assert (response.reasoning, response.text) == ("I add two", "It is 4.")


# LFM2's shape: past turns' "<think>...</think>" is cut from their content, but the
# template never writes reasoning itself (nothing to derive: the hand-written fallback)
STRIPS = """\
{%- for m in messages -%}<|im_start|>{{ m.role }}
{% if m.role == 'assistant' %}{{ m.content.split('</think>')[-1] }}
{%- else %}{{ m.content }}{% endif %}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""


def test_a_template_that_only_strips_think_blocks_still_has_them_split(tmp_path: Path) -> None:
    assert fmt(STRIPS) is None
    llm = llm_on(tmp_path, STRIPS, lambda request: pieces("<think>\nhmm\n</think>\n\nIt is 4."))
    assert every_way(llm) == ("hmm", "It is 4.", "hmm", "It is 4.")


def test_clearing_the_template_caches_forgets_the_learnt_formats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jazzmine.local.template import thinking
    from jazzmine.local.template.render import clear_cache

    learnt: list[object] = []
    monkeypatch.setattr(thinking, "_derive", lambda render: learnt.append(render))
    template = ChatTemplate("{{ messages[0].content }} cleared", "", "")
    thinking_format(template)
    thinking_format(template)
    assert len(learnt) == 3  # once for each field the reasoning may be in, then cached
    clear_cache()
    thinking_format(template)
    assert len(learnt) == 6
