"""Tool-call formats learnt from a template (tools/formats): derivation, reading (whole
and streamed) and grammars, on small templates written here in the shapes the sdist's
templates use (XML parameters, Python calls, numbered markers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.gbnf_recogniser import accepts

from jazzmine.local import LocalLLM
from jazzmine.local.errors import LLMToolCallError
from jazzmine.local.mock import MockReply, MockTransport
from jazzmine.local.template.engine.source import ChatTemplate
from jazzmine.local.tools.formats import probe
from jazzmine.local.tools.formats.derive import derive_format
from jazzmine.local.tools.plan import ToolPlan, plan_tools
from jazzmine.local.types import MessagePart

_TURNS = """{%- if tools %}<|im_start|>system
{% for t in tools %}{{ t.function.name }}
{% endfor %}<|im_end|>
{% endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{%- if m.tool_calls %}CALLS{%- else %}
{{ m.content }}{%- endif %}<|im_end|>
{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

XML_CALLS = """
{%- for tc in m.tool_calls %}
<tool_call>
<function={{ tc.function.name }}>
{%- for k, v in tc.function.arguments|items %}
<parameter={{ k }}>
{{ v if v is string else v|tojson }}
</parameter>
{%- endfor %}
</function>
</tool_call>
{%- endfor %}"""

PYTHON_CALLS = """
<|tool_call_start|>[{%- for tc in m.tool_calls %}{{ tc.function.name }}(
{%- for k, v in tc.function.arguments|items %}{{ k }}=
{%- if v is string %}'{{ v }}'{% else %}{{ v|tojson }}{% endif %}
{%- if not loop.last %}, {% endif %}{% endfor %})
{%- if not loop.last %}, {% endif %}{% endfor %}]<|tool_call_end|>"""

NUMBERED_CALLS = """
<|tool_calls_section_begin|>{%- for tc in m.tool_calls %}<|tool_call_begin|>functions.
{{- tc.function.name }}:{{ loop.index0 }}<|tool_call_argument_begin|>
{%- set a = tc.function.arguments %}{{ a if a is string else a|tojson }}<|tool_call_end|>
{%- endfor %}<|tool_calls_section_end|>"""

# MiniMax M3's shape: a fixed prefix before every tag, each parameter a tag named by
# its key ("]<]ns[>[<city>Paris]<]ns[>[</city>")
KEYED_CALLS = """
{%- set ns = ']<]ns[>[' %}{{ ns }}<tool_call>
{% for tc in m.tool_calls %}{{ ns }}<invoke name="{{ tc.function.name }}">
{%- for k, v in tc.function.arguments|items %}{{ ns }}<{{ k }}>
{{- v if v is string else v|tojson }}{{ ns }}</{{ k }}>{% endfor %}{{ ns }}</invoke>
{% endfor %}{{ ns }}</tool_call>"""


def template(calls: str, print_tools: bool = True) -> ChatTemplate:
    source = _TURNS.replace("CALLS", calls)
    if not print_tools:
        source = source[source.index("{%- for m in messages") :]
    return ChatTemplate(source, "", "<|im_end|>")


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER]

XML_REPLY = "<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n"
XML_REPLY += "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
PYTHON_REPLY = "<|tool_call_start|>[get_weather(city='New York', days=3)]<|tool_call_end|>"
NUMBERED_REPLY = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
    '<|tool_call_argument_begin|>{"city": "New York", "days": 3}<|tool_call_end|>'
    "<|tool_calls_section_end|>"
)
KEYED_REPLY = (
    ']<]ns[>[<tool_call>\n]<]ns[>[<invoke name="get_weather">]<]ns[>[<city>New York]<]ns[>[</city>'
    "]<]ns[>[<days>3]<]ns[>[</days>]<]ns[>[</invoke>\n]<]ns[>[</tool_call>"
)
CASES = {
    "xml": (XML_CALLS, XML_REPLY),
    "keyed": (KEYED_CALLS, KEYED_REPLY),
    "python": (PYTHON_CALLS, PYTHON_REPLY),
    "numbered": (NUMBERED_CALLS, NUMBERED_REPLY),
}


def plan(calls: str, choice: Any = "auto", print_tools: bool = True) -> ToolPlan:
    t = template(calls, print_tools)
    made = plan_tools(t.source, TOOLS, choice, template=t)
    assert made is not None
    return made


def test_xml_parameters_are_learnt() -> None:
    fmt = derive_format(template(XML_CALLS))
    assert fmt is not None and fmt.params is not None
    assert fmt.trigger == "<tool_call>"
    assert fmt.params.key_open.strip() == "<parameter="
    assert fmt.params.string_close.strip() == "</parameter>"
    assert fmt.parallel


def test_python_calls_are_learnt() -> None:
    fmt = derive_format(template(PYTHON_CALLS))
    assert fmt is not None and fmt.params is not None
    assert fmt.open.strip() == "<|tool_call_start|>["
    assert (fmt.params.string_open, fmt.params.string_close) == ("='", "'")
    assert (fmt.params.value_open, fmt.params.value_close) == ("=", "")
    assert fmt.separator == ", "


def test_a_numbered_call_has_an_index_hole() -> None:
    fmt = derive_format(template(NUMBERED_CALLS))
    assert fmt is not None and fmt.params is None
    assert "index" in [kind for kind, _ in fmt.call]
    assert fmt.close == "<|tool_calls_section_end|>"


def test_parameters_named_by_their_key_and_a_prefix_before_every_tag_are_learnt() -> None:
    fmt = derive_format(template(KEYED_CALLS))
    assert fmt is not None and fmt.params is not None
    assert fmt.trigger == "]<]ns[>[<tool_call>"
    assert fmt.tag_prefix == "]<]ns[>["
    assert fmt.params.key_open == "]<]ns[>[<"
    assert fmt.params.string_end("city") == "]<]ns[>[</city>"
    assert fmt.params.value_end("days") == "]<]ns[>[</days>"
    assert fmt.params.separator == ""
    assert fmt.markers[:2] == ("]<]ns[>[<tool_call>", "]<]ns[>[")
    assert "<tool_call>" in fmt.markers and "</tool_call>" in fmt.markers
    assert not any("\x00" in marker for marker in fmt.markers)


def test_two_calls_with_keyed_parameters_and_a_value_holding_markup() -> None:
    made = plan(KEYED_CALLS)
    one = ']<]ns[>[<invoke name="get_weather">]<]ns[>[<city>{}]<]ns[>[</city>]<]ns[>[</invoke>\n'
    reply = "]<]ns[>[<tool_call>\n" + one.format("Paris <b>") + one.format("Rome")
    parsed = made.parse(reply + "]<]ns[>[</tool_call>")
    assert [c.arguments["city"] for c in parsed.tool_calls] == ["Paris <b>", "Rome"]
    assert parsed.text == ""
    # a closing named by another key does not close the value
    with pytest.raises(LLMToolCallError, match="never closed"):
        made.parse("]<]ns[>[<tool_call>\n" + one.format("Paris").replace("</city>", "</town>"))


def test_a_template_that_writes_no_calls_has_no_format() -> None:
    assert derive_format(template("{{ m.content }}")) is None


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("choice", ["auto", "required"])
def test_the_reply_is_read_back_without_markup(case: str, choice: str) -> None:
    calls, reply = CASES[case]
    made = plan(calls, choice)
    assert made.family.name == "derived"
    assert made.template_tools is not None and made.system_text is None
    parsed = made.parse("Let me look.\n" + reply)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
        ("get_weather", {"city": "New York", "days": 3})
    ]
    assert parsed.text == "Let me look."


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_streamed_reply_shows_no_markup(case: str) -> None:
    calls, reply = CASES[case]
    splitter = plan(calls).splitter()
    shown = "".join(splitter.feed(c) for c in _pieces("Let me look.\n" + reply, 3))
    rest, parsed = splitter.finish()
    assert shown + rest == "Let me look."
    assert [c.name for c in parsed.tool_calls] == ["get_weather"]


def test_two_python_calls() -> None:
    made = plan(PYTHON_CALLS)
    reply = "<|tool_call_start|>[get_weather(city='Paris'), get_weather(city='Rome')]"
    parsed = made.parse(reply + "<|tool_call_end|>")
    assert [c.arguments["city"] for c in parsed.tool_calls] == ["Paris", "Rome"]


def test_arguments_are_checked_against_the_schema() -> None:
    made = plan(XML_CALLS, "required")
    bad = XML_REPLY.replace("3", "three")
    with pytest.raises(LLMToolCallError, match="schema"):
        made.parse(bad)
    with pytest.raises(LLMToolCallError):
        made.parse("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_forced_grammar_takes_the_template_s_own_call(case: str) -> None:
    calls, _ = CASES[case]
    reply = written(calls)
    grammar = plan(calls, "required").grammar()
    assert grammar is not None
    assert accepts(grammar.grammar, reply)
    assert not accepts(grammar.grammar, '{"tool_calls": []}')
    assert not accepts(grammar.grammar, reply.replace("get_weather", "get_water"))


def test_the_lazy_grammar_starts_at_the_trigger() -> None:
    made = plan(XML_CALLS)
    grammar = made.grammar(lazy=True)
    assert grammar is not None and grammar.lazy
    assert grammar.triggers == (("word", "<tool_call>"),)
    assert accepts(grammar.grammar, written(XML_CALLS))


def test_a_template_that_prints_no_tools_is_taught_them_in_its_format() -> None:
    made = plan(PYTHON_CALLS, print_tools=False)
    assert made.family.name == "derived"
    text = made.system_text
    assert text is not None and "get_weather(city='<city>'" in text
    assert made.parse(PYTHON_REPLY).tool_calls


def test_local_llm_reads_the_call_through_the_mock(tmp_path: Any) -> None:
    path = tmp_path / "xml.jinja"
    path.write_text(template(XML_CALLS).source)

    def reply(request: Any) -> MockReply:
        return MockReply(_pieces(XML_REPLY, 5))

    llm = LocalLLM(
        transport=MockTransport(reply), chat_template=str(path), tools=TOOLS, tool_choice="required"
    )
    result = llm.generate([MessagePart("user", "Weather?")])
    assert result.text == ""
    assert json.dumps(result.tool_calls[0].arguments) == '{"city": "New York", "days": 3}'


def written(calls: str) -> str:
    """The call as the template itself writes it after its generation prompt."""
    arguments = {"city": "New York", "days": 3}
    turn = probe.calls_turn(probe.call("get_weather", arguments, "abcdefghi"))
    text = probe.reply(template(calls), turn)
    assert text is not None and "New York" in text
    return text


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_further_call_cut_off_is_an_error_not_text() -> None:
    made = plan(NUMBERED_CALLS)
    cut = NUMBERED_REPLY.replace(
        "<|tool_calls_section_end|>", "<|tool_call_begin|>functions.get_wea"
    )
    with pytest.raises(LLMToolCallError, match="cut off"):
        made.parse(cut, complete=False)


def test_numbered_calls_start_at_zero_in_the_grammar() -> None:
    grammar = plan(NUMBERED_CALLS, "required").grammar()
    assert grammar is not None
    reply = written(NUMBERED_CALLS)
    assert ":0<|tool_call_argument_begin|>" in reply
    assert accepts(grammar.grammar, reply)
    assert not accepts(grammar.grammar, reply.replace(":0<", ":7<"))


def test_reasoning_off_lets_no_thinking_before_a_forced_call() -> None:
    """reasoning=False with a thinking template (Qwen3): the forced call's grammar has
    no reasoning block in front (the default model would think to max_tokens)."""
    path = Path(__file__).parent.parent / "fixtures" / "templates" / "Qwen-Qwen3-0.6B.jinja"
    grammars: list[str] = []

    def reply(request: Any) -> MockReply:
        grammars.append(request.grammar)
        return MockReply(['<tool_call>\n{"name": "get_weather", "arguments": {"city": "X"}}'])

    ask = [MessagePart("user", "Weather?")]
    for reasoning in (False, True):
        llm = LocalLLM(
            transport=MockTransport(reply),
            chat_template=str(path),
            tools=TOOLS,
            tool_choice="required",
            reasoning=reasoning,
        )
        assert llm.generate(ask).tool_calls
    assert "<think>" not in grammars[0]
    assert "<think>" in grammars[1]


def test_jazzmine_models_names_a_learnt_format(tmp_path: Path) -> None:
    from helpers.gguf_files import write_gguf

    from jazzmine.local.models.describe import describe

    path = tmp_path / "coder.gguf"
    pairs = [("general.architecture", 8, "qwen2"), ("qwen2.context_length", 4, 4096)]
    write_gguf(path, [*pairs, ("tokenizer.chat_template", 8, template(XML_CALLS).source)])
    assert describe(str(path))["template"] == "derived"


def test_the_eager_auto_grammar_takes_prose_or_prose_then_a_call() -> None:
    grammar = plan(XML_CALLS).grammar()
    assert grammar is not None and not grammar.lazy
    call = written(XML_CALLS)
    assert accepts(grammar.grammar, "It is sunny.")
    assert accepts(grammar.grammar, "Let me look.\n" + call)
    assert not accepts(grammar.grammar, "Let me look.\n<tool_call>\nnot a call")


def test_a_named_function_holds_the_grammar_to_it() -> None:
    other = {"type": "function", "function": {"name": "clock", "parameters": {}}}
    t = template(PYTHON_CALLS)
    named = {"type": "function", "function": {"name": "clock"}}
    made = plan_tools(t.source, [WEATHER, other], named, template=t)
    assert made is not None
    grammar = made.grammar()
    assert grammar is not None
    assert accepts(grammar.grammar, "<|tool_call_start|>[clock()]<|tool_call_end|>")
    assert not accepts(grammar.grammar, PYTHON_REPLY)
    with pytest.raises(LLMToolCallError, match="names 'clock'"):
        made.parse(PYTHON_REPLY)


def test_tool_choice_none_drops_a_call_written_anyway() -> None:
    parsed = plan(NUMBERED_CALLS, "none").parse("Sure.\n" + NUMBERED_REPLY)
    assert (parsed.text, parsed.tool_calls, parsed.dropped) == ("Sure.", (), 1)


# A template whose instructions mention <tool_call> (the hand-written hermes family's
# markup) while its own call turn writes a JSON list in <tool_calls> (Apriel 1.5).
LISTED_CALLS = """
<tool_calls>[{%- for tc in m.tool_calls %}{"name": "{{ tc.function.name }}", "arguments": {{
  tc.function.arguments|tojson }}}{% if not loop.last %}, {% endif %}{% endfor %}]</tool_calls>"""
MENTIONS_HERMES = "{#- a model once trained on <tool_call> -#}"


def test_a_family_matched_by_mention_gives_way_to_the_templates_own_call_turn() -> None:
    t = template(LISTED_CALLS)
    t = ChatTemplate(MENTIONS_HERMES + t.source, t.bos_token, t.eos_token)
    made = plan_tools(t.source, TOOLS, "auto", template=t)
    assert made is not None and made.family.name == "derived"
    assert made.family.trigger.startswith("<tool_calls>")
    reply = '<tool_calls>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_calls>'
    parsed = made.parse(reply)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert parsed.text == ""
    # a template whose call turn is the family's own keeps the hand-written family
    hermes = """
{%- for tc in m.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments|tojson }}}
</tool_call>{%- endfor %}"""
    assert plan(hermes).family.name == "hermes"


# A thinking template of MiniMax M3's shape: a turn without reasoning starts with the
# block's closing marker alone ("</mm:think>"), and calls are keyed as above.
M3_LIKE = (
    _TURNS.replace(
        "{%- if m.tool_calls %}",
        "{%- if m.role == 'assistant' %}\n{% if m.reasoning_content %}<mm:think>"
        "{{ m.reasoning_content }}{% endif %}</mm:think>{% endif %}{%- if m.tool_calls %}",
    )
    .replace("CALLS", KEYED_CALLS)
    .replace("{%- else %}\n{{ m.content }}", "{%- else %}{{ m.content }}")
)


def _m3_llm(tmp_path: Path, reply: str, choice: str, grammars: list[str]) -> LocalLLM:
    path = tmp_path / "m3.jinja"
    path.write_text(M3_LIKE)

    def answer(request: Any) -> MockReply:
        grammars.append(request.grammar)
        return MockReply(_pieces(reply, 3))

    return LocalLLM(
        transport=MockTransport(answer), chat_template=str(path), tools=TOOLS, tool_choice=choice
    )


@pytest.mark.parametrize(
    "reply",
    ["</mm:think>It is sunny.", "<mm:think>Look it up.</mm:think>It is sunny."],
)
def test_a_bare_closing_marker_first_is_an_empty_thinking_block(tmp_path: Path, reply: str) -> None:
    grammars: list[str] = []
    llm = _m3_llm(tmp_path, reply, "auto", grammars)
    ask = [MessagePart("user", "Weather?")]
    result = llm.generate(ask)
    assert result.text == "It is sunny."
    assert result.reasoning == ("Look it up." if "<mm:think>" in reply else None)
    streamed = "".join(str(v) for k, v in llm.stream(ask).events() if k == "text")
    assert streamed == "It is sunny."


def test_a_forced_call_after_a_bare_closing_marker(tmp_path: Path) -> None:
    grammars: list[str] = []
    reply = "</mm:think>" + KEYED_REPLY
    llm = _m3_llm(tmp_path, reply, "required", grammars)
    result = llm.generate([MessagePart("user", "Weather?")])
    assert result.text == ""
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("get_weather", {"city": "New York", "days": 3})
    ]
    # the grammar takes the closing marker alone, as the template writes it, and a block
    assert accepts(grammars[0], reply)
    assert accepts(grammars[0], "<mm:think>Hm.</mm:think>" + KEYED_REPLY)
    assert not accepts(grammars[0], "</mm:think></mm:think>" + KEYED_REPLY)


def test_a_forced_call_that_never_stops_thinking_says_so() -> None:
    # the grammar lets a thinking template think before its call; a small model may
    # think to the end of max_tokens, and the error then names the thinking
    qwen3 = Path(__file__).parent.parent / "fixtures" / "templates" / "Qwen-Qwen3-0.6B.jinja"
    llm = LocalLLM(
        transport=MockTransport(lambda request: MockReply(["<think>\nI wonder whether"])),
        chat_template=str(qwen3),
        tools=TOOLS,
        tool_choice="required",
    )
    with pytest.raises(LLMToolCallError, match=r"still thinking.*reasoning=False") as caught:
        llm.generate([MessagePart("user", "Weather in Oslo?")])
    assert caught.value.raw_text == "I wonder whether"
