"""Tool calls: shapes, families, grammars, parsing and streaming (jazzmine.local.tools.plan).

Most tests are pure. The grammars are checked two ways: a small GBNF recogniser
(``gbnf_recogniser``) says which texts a grammar accepts (so "the grammar forces a valid
call" is tested on real texts, including what each fixture template itself writes for a
call), and the ``real`` tests hand every grammar to llama.cpp's own parser and run the
default model under the "required" grammar.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers.gbnf_recogniser import accepts

from jazzmine.local import LLMError, LLMInternalError, LLMInvalidRequestError, LocalLLM
from jazzmine.local.template.engine.jinja import compile_template, run
from jazzmine.local.tools.families import (
    FAMILIES,
    GENERIC,
    HERMES,
    LLAMA3,
    MISTRAL_WITH_IDS,
    Family,
)
from jazzmine.local.tools.gbnf import Grammar
from jazzmine.local.tools.plan import (
    Choice,
    LLMToolCallError,
    Think,
    ToolCall,
    ToolGrammar,
    ToolPlan,
    call_id,
    check_tool_choice,
    check_tools,
    detect_family,
    finish_reason_for,
    parse_reply,
    plan_tools,
    validate,
)
from jazzmine.local.tools.reasoning import ReasoningSplitter
from jazzmine.local.types import MessagePart

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            },
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER, SEARCH]
CHECKED = check_tools(TOOLS)
AUTO, REQUIRED = Choice("auto"), Choice("required")
NAMED_SEARCH = {"type": "function", "function": {"name": "search"}}


def plan(family: str | Family, choice: Any = "auto", **options: Any) -> ToolPlan:
    made = plan_tools(None, TOOLS, choice, family=family, **options)
    assert made is not None
    return made


def grammar_of(made: ToolPlan, *, lazy: bool = False) -> str:
    built = made.grammar(lazy=lazy)
    assert built is not None
    return built.grammar


# ---------- tools and tool_choice ----------


def test_tools_are_checked_into_frozen_tools() -> None:
    tools = check_tools(TOOLS)
    assert [t.name for t in tools] == ["get_weather", "search"]
    assert tools[0].description == "Current weather in a city"
    assert tools[1].description == ""
    assert tools[0].parameters == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert check_tools(None) == () and check_tools([]) == ()
    no_parameters = check_tools([{"type": "function", "function": {"name": "now"}}])
    assert no_parameters[0].parameters == {}  # as llama.cpp hands it to templates
    assert no_parameters[0].schema == {"type": "object", "properties": {}}
    made = plan_tools(None, [{"type": "function", "function": {"name": "now"}}], "required")
    assert made is not None
    assert accepts(grammar_of(made), '{"tool_calls": [{"name": "now", "arguments": {}}]}')
    assert made.parse('{"tool_calls": [{"name": "now", "arguments": {}}]}').tool_calls


def test_later_edits_of_the_callers_schema_do_not_reach_a_checked_tool() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "string"}}}
    tools = check_tools([{"type": "function", "function": {"name": "f", "parameters": schema}}])
    schema["properties"]["a"]["type"] = "integer"
    assert tools[0].parameters["properties"]["a"]["type"] == "string"


def _function(**fields: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "f", **fields}}]


@pytest.mark.parametrize(
    ("tools", "kind", "words"),
    [
        ("get_weather", TypeError, "must be a list"),
        (WEATHER, TypeError, "must be a list"),
        (["get_weather"], TypeError, "tools[0] must be a dict"),
        ([{"function": WEATHER["function"]}], ValueError, "'type': 'function'"),
        ([{"type": "function"}], TypeError, "tools[0]['function'] must be a dict"),
        ([{"type": "function", "function": {}}], TypeError, "'name'] must be a str"),
        (_function(name="get weather"), ValueError, "letters, digits"),
        ([{"type": "function", "function": {"name": "x" * 65}}], ValueError, "1 to 64"),
        ([WEATHER, WEATHER], ValueError, "two tools are named 'get_weather'"),
        (_function(description=3), TypeError, "description'] must be a str"),
        (_function(parameters="{}"), TypeError, "JSON schema dict"),
        (_function(parameters={"type": "string"}), ValueError, "must describe an object"),
        (_function(parameters={"properties": {"a": {1, 2}}}), TypeError, "not plain JSON"),
        (_function(parameters={"properties": []}), ValueError, "'properties'] must be a dict"),
        (_function(parameters={"properties": {"a": {"enum": []}}}), ValueError, "non-empty"),
        (_function(parameters={"required": "a"}), ValueError, "list of property names"),
        (_function(parameters={"properties": {"a": {"type": "text"}}}), ValueError, "'text'"),
        (
            _function(
                parameters={"properties": {"a": {"type": "array", "minItems": 3, "maxItems": 1}}}
            ),
            ValueError,
            "minItems is more than maxItems",
        ),
        (_function(parameters={"properties": {"a": False}}), ValueError, "no value satisfies"),
        (_function(returns={}), ValueError, "unknown keys: returns"),
        ([{**WEATHER, "extra": 1}], ValueError, "unknown keys: extra"),
    ],
)
def test_malformed_tools_raise_naming_the_problem(tools: Any, kind: type, words: str) -> None:
    with pytest.raises(kind) as raised:
        check_tools(tools)
    assert isinstance(raised.value, LLMInvalidRequestError)
    assert words in str(raised.value)


def test_tool_choice_forms() -> None:
    assert check_tool_choice(None, CHECKED) == Choice("auto")
    for mode in ("auto", "none", "required"):
        assert check_tool_choice(mode, CHECKED) == Choice(mode)
    named = check_tool_choice(NAMED_SEARCH, CHECKED)
    assert named == Choice("named", "search") and named.forces_call
    assert Choice("required").forces_call and not Choice("auto").forces_call


@pytest.mark.parametrize(
    ("choice", "tools", "kind", "words"),
    [
        ("always", CHECKED, ValueError, "'auto', 'none', 'required'"),
        ("required", (), ValueError, "needs tools"),
        (3, CHECKED, TypeError, "a str or a dict"),
        ({"type": "function", "function": {"name": "nope"}}, CHECKED, ValueError, "'nope'"),
        ({"type": "function", "name": "search"}, CHECKED, ValueError, "as a dict must be"),
        ({"type": "tool", "function": {"name": "search"}}, CHECKED, ValueError, "as a dict"),
        ({"type": "function", "function": {"name": 1}}, CHECKED, TypeError, "must be a str"),
    ],
)
def test_malformed_tool_choice_raises(choice: Any, tools: Any, kind: type, words: str) -> None:
    with pytest.raises(kind) as raised:
        check_tool_choice(choice, tools)
    assert isinstance(raised.value, LLMInvalidRequestError)
    assert words in str(raised.value)


def test_unknown_named_function_lists_the_tools() -> None:
    with pytest.raises(ValueError, match=r"'get_weather', 'search'"):
        plan_tools(None, TOOLS, {"type": "function", "function": {"name": "weather"}})


# ---------- families ----------

FIXTURE_FAMILIES = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": "hermes",
    "Qwen-Qwen3-0.6B.jinja": "hermes",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama3",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "mistral_nemo",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": "mistral",
    # this SmolLM3 template (Unsloth's edit) has no tool support at all
    "HuggingFaceTB-SmolLM3-3B.jinja": "generic",
    "microsoft-Phi-3.5-mini-instruct.jinja": "generic",
    "google-gemma-2-2b-it.jinja": "generic",
}


def test_every_fixture_template_has_an_expected_family() -> None:
    assert set(FIXTURE_FAMILIES) == {p.name for p in TEMPLATES.glob("*.jinja")}


@pytest.mark.parametrize(("name", "family"), FIXTURE_FAMILIES.items())
def test_family_detection_on_the_fixture_templates(name: str, family: str) -> None:
    detected = detect_family((TEMPLATES / name).read_text())
    assert detected.name == family
    assert detected.native == (family != "generic")


def test_family_detection_edges() -> None:
    assert detect_family(None) is GENERIC and detect_family("") is GENERIC
    small = (TEMPLATES / "Mistral-Small-3.2-24B-Instruct-2506.jinja").read_text()
    assert detect_family(small) is MISTRAL_WITH_IDS
    devstral = "{{ '[TOOL_CALLS]' + name + '[ARGS]' + args|tojson }}"
    assert detect_family(devstral).name == "mistral" and not detect_family(devstral).model_ids
    coder = "{{ '<tool_call>\\n<function=' + name + '>\\n<parameter=' }}"
    assert detect_family(coder) is GENERIC
    assert detect_family("{{ '<tool_call>' + tool_call.arguments|tojson }}") is HERMES


# ---------- what each native template writes for a call ----------

NATIVE_FIXTURES = [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "<|im_end|>"),
    ("Qwen-Qwen3-0.6B.jinja", "<|im_end|>"),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|eot_id|>"),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|eot_id|>"),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "</s>"),
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "</s>"),
]


def template_call_text(name: str, calls: list[dict[str, Any]]) -> str:
    """The text a template writes for an assistant message making ``calls``: what its
    model was trained to produce, so what the parser and the grammars must take."""
    compiled = compile_template((TEMPLATES / name).read_text())
    user = {"role": "user", "content": "Weather in Paris?"}
    assistant = {"role": "assistant", "content": "", "tool_calls": calls}
    context: dict[str, Any] = {
        "tools": [tool.as_template_tool() for tool in CHECKED],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "strftime_now": lambda fmt: time.strftime(fmt),
    }
    prompt = run(compiled, {**context, "messages": [user], "add_generation_prompt": True})
    whole = run(compiled, {**context, "messages": [user, assistant]})
    assert whole.startswith(prompt)
    return whole[len(prompt) :]


def openai_call(name: str, arguments: dict[str, Any], ident: str = "abcDEF123") -> dict[str, Any]:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


def without_reasoning(reply: str) -> str:
    """The answer part of a reply (Qwen3's template writes an empty think block)."""
    splitter = ReasoningSplitter()
    _, answer = splitter.feed(reply)
    return answer + splitter.finish()[1]


@pytest.mark.parametrize(("name", "end"), NATIVE_FIXTURES)
def test_the_parser_reads_the_call_each_template_writes(name: str, end: str) -> None:
    arguments = {"city": "Paris", "unit": "celsius"}
    written = template_call_text(name, [openai_call("get_weather", arguments)])
    reply = without_reasoning(written.split(end)[0])
    family = detect_family((TEMPLATES / name).read_text())
    parsed = parse_reply(reply, family, CHECKED)
    assert parsed.text == ""
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", arguments)]
    if family.model_ids:
        assert parsed.tool_calls[0].id == "abcDEF123"


@pytest.mark.parametrize(("name", "end"), NATIVE_FIXTURES)
def test_every_grammar_accepts_the_call_each_template_writes(name: str, end: str) -> None:
    written = template_call_text(name, [openai_call("search", {"query": "rain", "limit": 2})])
    reply = written.split(end)[0]
    family = detect_family((TEMPLATES / name).read_text())
    for choice in ("required", NAMED_SEARCH):
        assert accepts(grammar_of(plan(family, choice, think=Think())), reply), choice
    assert accepts(grammar_of(plan(family)), reply)
    # a lazy grammar sees the reply from its trigger on
    start = reply.find(family.trigger) if family.trigger else len(reply) - len(reply.lstrip())
    assert accepts(grammar_of(plan(family), lazy=True), reply[start:])


@pytest.mark.parametrize(("name", "end"), NATIVE_FIXTURES[:2] + NATIVE_FIXTURES[4:])
def test_parallel_calls_as_the_templates_write_them(name: str, end: str) -> None:
    calls = [
        openai_call("get_weather", {"city": "Paris"}, "aaaaaaaa1"),
        openai_call("search", {"query": "rain"}, "bbbbbbbb2"),
    ]
    reply = template_call_text(name, calls).split(end)[0]
    family = detect_family((TEMPLATES / name).read_text())
    parsed = parse_reply(without_reasoning(reply), family, CHECKED)
    assert [c.name for c in parsed.tool_calls] == ["get_weather", "search"]
    assert accepts(grammar_of(plan(family, "required", think=Think())), reply)
    single = grammar_of(plan(family, "required", parallel=False, think=Think()))
    assert not accepts(single, reply)


# ---------- grammars ----------

FAMILY_NAMES = ["hermes", "llama3", "mistral_nemo", "mistral", "generic"]


def call_text(family: str, name: str, arguments: str) -> str:
    """One call in ``family``'s format, arguments given as JSON text."""
    head = json.dumps({"name": name})[:-1]
    if family == "hermes":
        return f'<tool_call>\n{head}, "arguments": {arguments}}}\n</tool_call>'
    if family == "llama3":
        return f'{head}, "parameters": {arguments}}}'
    if family == "mistral_nemo":
        return f'[TOOL_CALLS][{head}, "arguments": {arguments}}}]'
    if family == "mistral":
        return f"[TOOL_CALLS]{name}[ARGS]{arguments}"
    return f'{{"tool_calls": [{head}, "arguments": {arguments}}}]}}'


VALID_ARGUMENTS = [
    ("get_weather", '{"city": "Paris"}'),
    ("get_weather", '{"city": "Paris", "unit": "fahrenheit"}'),
    ("get_weather", '{\n  "city": "S\\u00e3o Paulo",\n  "unit": "celsius"\n}'),
    ("search", '{"query": "a \\"quoted\\" word"}'),
    ("search", '{"query": "x", "limit": 3, "tags": ["a", "b"]}'),
    ("search", '{"query": "x", "tags": []}'),
]
INVALID_ARGUMENTS = [
    ("get_weather", "{}"),  # required city missing
    ("get_weather", '{"city": 3}'),  # wrong type
    ("get_weather", '{"city": "Paris", "unit": "kelvin"}'),  # not in the enum
    ("get_weather", '{"city": "Llanfairpwllgwyngyllgogery"}'),  # over maxLength
    ("get_weather", '{"city": "Paris", "wind": true}'),  # no additional properties
    ("search", '{"query": "x", "limit": -1}'),  # minimum 1: no sign allowed
    ("search", '{"query": "x", "tags": ["a", "b", "c", "d"]}'),  # over maxItems
    ("search", '{"query": "x", "limit": 1.5}'),  # not an integer
    ("fetch", '{"url": "x"}'),  # not a tool
]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_forced_grammars_accept_valid_calls_and_nothing_else(family: str) -> None:
    grammar = grammar_of(plan(family, "required"))
    for name, arguments in VALID_ARGUMENTS:
        assert accepts(grammar, call_text(family, name, arguments)), (name, arguments)
    for name, arguments in INVALID_ARGUMENTS:
        assert not accepts(grammar, call_text(family, name, arguments)), (name, arguments)
    assert not accepts(grammar, "The weather is fine.")
    assert not accepts(grammar, "")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_named_choice_allows_only_that_function(family: str) -> None:
    grammar = grammar_of(plan(family, NAMED_SEARCH))
    assert accepts(grammar, call_text(family, "search", '{"query": "x"}'))
    assert not accepts(grammar, call_text(family, "get_weather", '{"city": "Paris"}'))


@pytest.mark.parametrize("family", ["hermes", "mistral_nemo", "mistral"])
def test_eager_auto_grammar_is_prose_without_the_trigger_then_calls(family: str) -> None:
    grammar = grammar_of(plan(family))
    call = call_text(family, "get_weather", '{"city": "Paris"}')
    assert accepts(grammar, "")
    assert accepts(grammar, "It is sunny <b>today</b> [TOOL] <tool_cal")
    assert accepts(grammar, "Let me look.\n" + call)
    assert accepts(grammar, call)
    assert not accepts(grammar, "Let me look.\n" + call_text(family, "get_weather", "{}"))
    assert not accepts(grammar, call + "\nDone.")  # nothing after the calls
    trigger = FAMILIES[family].trigger
    assert not accepts(grammar, f"see {trigger} here")


def test_llama3_eager_auto_grammar() -> None:
    grammar = grammar_of(plan("llama3"))
    call = call_text("llama3", "get_weather", '{"city": "Paris"}')
    assert accepts(grammar, call)
    assert accepts(grammar, "<|python_tag|>" + call)
    assert accepts(grammar, "It is sunny {really}.")
    assert accepts(grammar, "<b>sun</b>")
    assert not accepts(grammar, '{"answer": 4}')  # a reply opening with "{" is a call
    assert not accepts(grammar, call_text("llama3", "get_weather", '{"town": "Paris"}'))


@pytest.mark.parametrize("family", ["hermes", "mistral_nemo", "mistral"])
def test_lazy_grammars_start_at_their_trigger(family: str) -> None:
    built = plan(family).grammar(lazy=True)
    assert built is not None and built.lazy
    trigger = FAMILIES[family].trigger
    assert built.triggers == (("word", trigger),)
    assert trigger in built.preserved_tokens
    call = call_text(family, "get_weather", '{"city": "Paris"}')
    assert accepts(built.grammar, call)
    assert not accepts(built.grammar, "Hello " + call)
    fields = built.server_fields()
    assert fields["grammar_lazy"] is True
    assert fields["grammar_triggers"] == [{"type": 1, "value": trigger}]
    assert fields["preserved_tokens"] == list(built.preserved_tokens)


def test_llama3_lazy_grammar_triggers_on_a_leading_brace() -> None:
    import re

    built = plan("llama3").grammar(lazy=True)
    assert built is not None and built.triggers[0][0] == "pattern_full"
    pattern = re.compile(built.triggers[0][1])
    assert pattern.fullmatch('  {"name": "search"')
    assert pattern.fullmatch("<|python_tag|>")
    assert not pattern.fullmatch('Sure: {"name"')
    assert built.server_fields()["grammar_triggers"][0]["type"] == 3
    assert accepts(
        built.grammar, "<|python_tag|>" + call_text("llama3", "search", '{"query": "x"}')
    )


def test_generic_grammar_is_the_envelope() -> None:
    auto = grammar_of(plan("generic"))
    call = call_text("generic", "get_weather", '{"city": "Paris"}')
    assert accepts(auto, call)
    assert accepts(auto, '{"content": "It is \\"sunny\\".\\nBye"}')
    assert not accepts(auto, "It is sunny.")
    assert not accepts(auto, '{"content": 3}')
    required = grammar_of(plan("generic", "required"))
    assert accepts(required, call) and not accepts(required, '{"content": "hi"}')
    # the generic family never needs a lazy grammar
    lazy = plan("generic").grammar(lazy=True)
    assert lazy is not None and not lazy.lazy and lazy.grammar == auto


def test_no_grammar_without_a_call_to_constrain() -> None:
    assert plan("hermes", "none").grammar() is None
    assert plan_tools(None, [], "auto") is None


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_forced_grammar_lets_the_model_reason_first(family: str) -> None:
    call = call_text(family, "get_weather", '{"city": "Paris"}')
    closed = grammar_of(plan(family, "required", think=Think()))
    assert accepts(closed, call)
    assert accepts(closed, "<think>\nIt wants <b>weather</b>.\n</think>\n" + call)
    assert not accepts(closed, "<think>still thinking" + call)
    opened = grammar_of(plan(family, "required", think=Think(opened=True)))
    assert accepts(opened, "It wants weather.\n</think>\n" + call)
    assert not accepts(opened, call)


# ---------- JSON schema: grammar and validator agree ----------

SCHEMAS: list[tuple[dict[str, Any], list[Any]]] = [
    (
        {"type": "string", "minLength": 2, "maxLength": 3},
        ["", "a", "ab", "abc", "abcd", 3, None],
    ),
    ({"type": "integer"}, [0, -7, 12, 1.5, "3", True, None]),
    ({"type": "integer", "minimum": 0}, [0, 5, -1]),
    ({"type": "number"}, [0, -2.5, 1e-07, 3, "x", False]),
    ({"type": "boolean"}, [True, False, 0, "true"]),
    ({"type": ["string", "null"]}, ["a", None, 1]),
    ({"type": "string", "nullable": True}, ["a", None, 1]),
    ({"enum": ["a", 1, None, True]}, ["a", 1, None, True, "b", 2, False]),
    ({"const": {"k": [1, 2]}}, [{"k": [1, 2]}, {"k": [1]}, [1, 2]]),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a", 1.5, None]),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
        [[], [1], [1, 2], [1, 2, 3], ["a"], {"a": 1}],
    ),
    ({"type": "array"}, [[], [1, "a", None, {"b": [True]}]]),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {}},
            "required": ["b"],
        },
        [{"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": [1]}, {"a": 1}, {}, {"b": 2}],
    ),
    (
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        [{}, {"a": 1}, {"b": 2}, {"a": 1, "b": 2}, {"a": 1, "z": 2}],
    ),
    ({"type": "object"}, [{}, {"any": {"thing": [1]}}, [], "x"]),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, [{"a": 1}, {"a": "x"}]),
    ({"type": "object", "additionalProperties": False}, [{}, {"a": 1}]),
    (
        {
            "type": "object",
            "properties": {"inner": {"type": "object", "properties": {"x": {"enum": [1, 2]}}}},
            "required": ["inner"],
        },
        [{"inner": {}}, {"inner": {"x": 2}}, {"inner": {"x": 3}}, {"inner": []}],
    ),
]


@pytest.mark.parametrize(("schema", "values"), SCHEMAS)
def test_the_grammar_accepts_exactly_what_the_validator_accepts(
    schema: dict[str, Any], values: list[Any]
) -> None:
    g = Grammar()
    g.rules["root"] = g.schema(schema, "value")
    grammar = g.text()
    valid_seen = invalid_seen = False
    for value in values:
        valid = validate(value, schema) == []
        valid_seen |= valid
        invalid_seen |= not valid
        # const and enum values have one spelling in the grammar: the compact one
        fixed = "const" in schema or "enum" in schema
        for text in [json.dumps(value)] + ([] if fixed else [json.dumps(value, indent=2)]):
            assert accepts(grammar, text) == valid, (schema, text)
    assert valid_seen and (invalid_seen or schema == {"type": "array"})


def test_keywords_only_the_validator_checks() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "number", "maximum": 10, "exclusiveMinimum": 0, "multipleOf": 0.5},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "ids": {"type": "array", "uniqueItems": True},
        },
    }
    assert validate({"n": 2.5, "code": "ABC", "ids": [1, 2]}, schema) == []
    errors = validate({"n": 11, "code": "abc", "ids": [1, 1]}, schema)
    assert len(errors) == 3 and "$.n: more than 10" in errors
    assert validate({"n": 0}, schema) == ["$.n: not more than 0"]
    assert validate({"n": 0.3}, schema) == ["$.n: not a multiple of 0.5"]


def test_unsupported_keywords_fall_back_to_any_json_value() -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": "#/$defs/thing"}}, "required": ["x"]}
    g = Grammar()
    g.rules["root"] = g.schema(schema, "v")
    for value in ({"x": 1}, {"x": {"deep": ["any"]}}, {"x": None}):
        assert accepts(g.text(), json.dumps(value)) and validate(value, schema) == []
    assert not accepts(g.text(), "{}")


# ---------- parsing ----------


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_well_formed_call_parses_and_validates(family: str) -> None:
    reply = call_text(family, "search", '{"query": "rain", "limit": 2}')
    parsed = parse_reply(reply, FAMILIES[family], CHECKED)
    assert parsed.text == ""
    (call,) = parsed.tool_calls
    assert (call.name, call.arguments) == ("search", {"query": "rain", "limit": 2})
    assert call.id == call_id(reply, 0, FAMILIES[family].id_style)
    assert finish_reason_for(parsed, "stop") == "tool_calls"


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_reply_without_calls_is_its_text(family: str) -> None:
    text = "  The weather is fine, <b>really</b> [sic].\n"
    parsed = parse_reply(text, FAMILIES[family], CHECKED)
    assert parsed == type(parsed)(text, ())
    assert finish_reason_for(parsed, "stop") == "stop"


@pytest.mark.parametrize("family", ["hermes", "mistral_nemo", "mistral"])
def test_text_around_marked_calls_is_kept_and_markup_is_not(family: str) -> None:
    first = call_text(family, "get_weather", '{"city": "Paris"}')
    second = call_text(family, "search", '{"query": "umbrella"}')
    reply = f"I will check.\n\n{first}\n{second}\nBack soon."
    parsed = parse_reply(reply, FAMILIES[family], CHECKED)
    assert parsed.text == "I will check.\nBack soon."
    assert [c.name for c in parsed.tool_calls] == ["get_weather", "search"]
    assert len({c.id for c in parsed.tool_calls}) == 2


@pytest.mark.parametrize(
    ("family", "reply", "words"),
    [
        (
            "hermes",
            '<tool_call>\n{"name": "search", "arguments": {"query": }}\n</tool_call>',
            "invalid JSON",
        ),
        ("hermes", '<tool_call>\n{"name": "search", "arguments": {"query": "x"}', "never closed"),
        ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>', "no 'name'"),
        (
            "hermes",
            '<tool_call>\n{"name": "search", "arguments": {"query": "x"}} and more\n</tool_call>',
            "after the call",
        ),
        (
            "mistral_nemo",
            '[TOOL_CALLS][{"name": "search", "arguments": {"query": "x"}',
            "invalid JSON",
        ),
        ("mistral_nemo", "[TOOL_CALLS][]", "list is empty"),
        ("mistral", '[TOOL_CALLS]search[ARGS]{"query": ', "invalid JSON"),
        ("mistral", "[TOOL_CALLS]search(query=x)", "invalid JSON"),
        ("llama3", '{"name": "search", "parameters": {"query": "x"', "invalid JSON"),
        ("llama3", "<|python_tag|>print('hi')", "invalid JSON"),
        (
            "llama3",
            '{"name": "search", "parameters": {"query": "x"}}; {"oops": 1}',
            "not a function call",
        ),
        (
            "generic",
            '{"tool_calls": [{"name": "search", "arguments": {"query": "x"}}',
            "invalid JSON",
        ),
        ("generic", '{"tool_calls": {"name": "search"}}', "not a list"),
    ],
)
def test_a_started_call_that_cannot_be_parsed_raises_with_the_raw_text(
    family: str, reply: str, words: str
) -> None:
    with pytest.raises(LLMToolCallError) as raised:
        parse_reply(reply, FAMILIES[family], CHECKED)
    error = raised.value
    assert isinstance(error, LLMInternalError) and isinstance(error, LLMError)
    assert words in str(error)
    assert error.raw_text == reply and error.partial_text == reply


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize(
    ("name", "arguments", "words"),
    [
        ("fetch", '{"url": "x"}', "'fetch', which is not one of the tools"),
        ("get_weather", '{"city": "Paris", "unit": "kelvin"}', "$.unit: must be one of"),
        ("get_weather", "{}", "missing required property 'city'"),
        ("get_weather", "[1]", "not a JSON object"),
        ("get_weather", '"{\\"city\\": }"', "are not JSON"),
    ],
)
def test_calls_to_unknown_tools_or_with_bad_arguments_raise(
    family: str, name: str, arguments: str, words: str
) -> None:
    reply = call_text(family, name, arguments)
    with pytest.raises(LLMToolCallError, match="tool call 0") as raised:
        parse_reply(reply, FAMILIES[family], CHECKED)
    assert words in str(raised.value)
    assert raised.value.raw_text == reply


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_arguments_given_as_a_json_string_are_read(family: str) -> None:
    encoded = json.dumps(json.dumps({"city": "Oslo"}))
    parsed = parse_reply(call_text(family, "get_weather", encoded), FAMILIES[family], CHECKED)
    assert parsed.tool_calls[0].arguments == {"city": "Oslo"}


@pytest.mark.parametrize("family", ["hermes", "mistral_nemo", "mistral", "llama3"])
def test_a_call_cut_off_by_max_tokens_says_so(family: str) -> None:
    whole = call_text(family, "search", '{"query": "a long question"}')
    cut = whole[: whole.index("long")]
    with pytest.raises(LLMToolCallError, match="cut off by max_tokens"):
        parse_reply(cut, FAMILIES[family], CHECKED, complete=False)


def test_a_hermes_call_missing_only_its_closing_tag_is_accepted() -> None:
    reply = '<tool_call>\n{"name": "search", "arguments": {"query": "x"}}'
    assert parse_reply(reply, HERMES, CHECKED).tool_calls[0].arguments == {"query": "x"}


def test_choice_is_enforced_when_parsing() -> None:
    call = call_text("hermes", "get_weather", '{"city": "Paris"}')
    with pytest.raises(LLMToolCallError, match="requires a tool call"):
        parse_reply("No.", HERMES, CHECKED, REQUIRED)
    with pytest.raises(LLMToolCallError, match="names 'search'"):
        parse_reply(call, HERMES, CHECKED, Choice("named", "search"))
    # "none": a call written anyway is left out of the text, counted, never returned
    dropped = parse_reply(f"Hi. {call}", HERMES, CHECKED, Choice("none"))
    assert (dropped.text, dropped.tool_calls, dropped.dropped) == ("Hi.", (), 1)


def test_llama3_specifics() -> None:
    wrapped = '{"type": "function", "function": {"name": "search", "parameters": {"query": "x"}}}'
    assert parse_reply(wrapped, LLAMA3, CHECKED).tool_calls[0].name == "search"
    one = '{"name": "search", "parameters": {"query": "%s"}}'
    two = f"{one % 'a'}; {one % 'b'}"
    assert [c.arguments["query"] for c in parse_reply(two, LLAMA3, CHECKED).tool_calls] == [
        "a",
        "b",
    ]
    tagged = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}'
    assert parse_reply(tagged, LLAMA3, CHECKED).tool_calls[0].arguments == {"city": "Rome"}
    builtin = '<|python_tag|>search.call(query="sun \\"today\\"")'
    assert parse_reply(builtin, LLAMA3, CHECKED).tool_calls[0].arguments == {"query": 'sun "today"'}
    # JSON that is not a call, and text that only starts with a brace, are answers
    for text in ('{"answer": 42}', "{curly} braces", "{"):
        assert parse_reply(text, LLAMA3, CHECKED).text == text


def test_generic_specifics() -> None:
    generic = FAMILIES["generic"]
    assert parse_reply('{"content": "Hi \\u00e9"}', generic, CHECKED).text == "Hi é"
    # a content envelope cut short keeps the answer so far
    cut = parse_reply('{"content": "It is sun', generic, CHECKED, complete=False)
    assert cut.text == "It is sun" and cut.tool_calls == ()
    both = (
        '{"content": "Checking.", "tool_calls": [{"name": "search", "arguments": {"query": "x"}}]}'
    )
    parsed = parse_reply(both, generic, CHECKED)
    assert parsed.text == "Checking." and parsed.tool_calls[0].name == "search"
    for text in ("plain words", '{"answer": 1}', "[1, 2]"):
        assert parse_reply(text, generic, CHECKED).text == text


def test_mistral_ids_are_the_models_when_valid_else_nine_characters() -> None:
    nemo = FAMILIES["mistral_nemo"]
    given = '[TOOL_CALLS][{"name": "search", "arguments": {"query": "x"}, "id": "Zz9Zz9Zz9"}]'
    assert parse_reply(given, nemo, CHECKED).tool_calls[0].id == "Zz9Zz9Zz9"
    odd = given.replace("Zz9Zz9Zz9", "call-1")
    made = parse_reply(odd, nemo, CHECKED).tool_calls[0].id
    assert made == call_id(odd, 0, "mistral") and len(made) == 9 and made.isalnum()
    small = '[TOOL_CALLS]search[CALL_ID]a1b2c3d4e[ARGS]{"query": "x"}'
    assert parse_reply(small, MISTRAL_WITH_IDS, CHECKED).tool_calls[0].id == "a1b2c3d4e"


def test_call_ids_are_fixed_by_the_reply_and_the_position() -> None:
    assert call_id("reply", 0) == call_id("reply", 0)
    assert len({call_id("reply", 0), call_id("reply", 1), call_id("other", 0)}) == 3
    assert call_id("reply", 0).startswith("call_") and len(call_id("reply", 0)) == 29


def test_tool_call_as_openai_message_part() -> None:
    call = ToolCall("call_1", "search", {"query": "é"})
    assert call.to_openai() == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": '{"query": "é"}'},
    }


# ---------- streaming ----------

STREAM_REPLIES = {
    "hermes": [
        "Plain answer <b>bold</b> and <tool_box> too.  ",
        "Checking. " + call_text("hermes", "search", '{"query": "x"}') + "\nDone.",
        call_text("hermes", "search", '{"query": "x"}')
        + call_text("hermes", "search", '{"query": "y"}'),
    ],
    "mistral_nemo": [
        "[INST] is not [TOOL_CALL",
        "Ok " + call_text("mistral_nemo", "search", '{"query": "x"}'),
    ],
    "mistral": ["Sure." + call_text("mistral", "search", '{"query": "x"}')],
    "llama3": [
        "  Just text, {with} braces.",
        call_text("llama3", "search", '{"query": "x"}'),
        "<|python_tag|>" + call_text("llama3", "search", '{"query": "x"}'),
        "<|pyth is text",
        '{"answer": 1}',
    ],
    "generic": [
        '{"content": "Line one\\nline \\"two\\" \\u00e9\\ud83d\\ude00 end"}',
        call_text("generic", "search", '{"query": "x"}'),
        "not an envelope",
        '{"content": "cut sho',
    ],
}


def chunkings(text: str) -> list[list[str]]:
    rng = random.Random(len(text))
    cuts = [[text], list(text)]
    for _ in range(5):
        points = sorted(rng.sample(range(1, len(text)), min(4, len(text) - 1)))
        cuts.append([text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)])
    return cuts


@pytest.mark.parametrize(
    ("family", "reply"), [(f, r) for f, replies in STREAM_REPLIES.items() for r in replies]
)
def test_streamed_text_joins_to_the_parsed_text_and_never_shows_markup(
    family: str, reply: str
) -> None:
    made = plan(family)
    complete = not reply.endswith("sho")
    expected = made.parse(reply, complete=complete)
    for pieces in chunkings(reply):
        splitter = made.splitter()
        streamed = [splitter.feed(piece) for piece in pieces]
        rest, parsed = splitter.finish(complete=complete)
        assert "".join(streamed) + rest == expected.text
        assert parsed == expected
        for marker in ("<tool_call>", "[TOOL_CALLS]", '"tool_calls"', '"name"', "<|python_tag|>"):
            if marker in reply and marker not in expected.text:
                assert marker not in "".join(streamed)


def test_a_possible_trigger_is_held_back_until_it_is_known() -> None:
    splitter = plan("hermes").splitter()
    assert splitter.feed("Hello <tool_ca") == "Hello"
    assert splitter.feed("ll>\n{") == ""
    assert splitter.feed('"name": "search", "arguments": {"query": "x"}}\n</tool_call>') == ""
    rest, parsed = splitter.finish()
    assert rest == "" and parsed.text == "Hello" and parsed.tool_calls[0].name == "search"
    released = plan("hermes").splitter()
    assert released.feed("a <tool_") == "a"
    assert released.feed("box> b") == " <tool_box> b"


def test_the_generic_content_streams_as_decoded_text() -> None:
    splitter = plan("generic").splitter()
    assert splitter.feed('{"cont') == ""
    assert splitter.feed('ent": "Hi\\') == "Hi"
    assert splitter.feed("n\\ud83d") == "\n"
    assert splitter.feed("\\ude00!") == "😀!"
    assert splitter.feed('"}') == ""
    assert splitter.finish() == ("", type(splitter.finish()[1])("Hi\n😀!", ()))


def test_stream_errors_are_raised_at_the_end() -> None:
    splitter = plan("hermes", "required").splitter()
    assert splitter.feed("<tool_call>\n{broken") == ""
    with pytest.raises(LLMToolCallError) as raised:
        splitter.finish()
    assert raised.value.raw_text == "<tool_call>\n{broken"


# ---------- the plan ----------


def test_native_families_get_the_tools_in_llama_cpps_shape() -> None:
    made = plan("hermes")
    listed = made.template_tools
    assert listed is not None
    assert [list(t) for t in listed] == [["type", "function"]] * 2
    assert list(listed[1]["function"]) == ["name", "description", "parameters"]
    assert listed[1]["function"]["description"] == ""
    assert made.system_text is None
    messages = [MessagePart("user", "hi")]
    assert made.messages(messages) == messages


def test_the_qwen_template_lists_the_tools_it_is_given() -> None:
    compiled = compile_template((TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text())
    made = plan("hermes")
    prompt = run(
        compiled, {"messages": [{"role": "user", "content": "hi"}], "tools": made.template_tools}
    )
    assert '{"type": "function", "function": {"name": "search", "description": ""' in prompt


def test_generic_tools_go_into_the_system_message() -> None:
    made = plan("generic")
    text = made.system_text
    assert text is not None and '"name": "get_weather"' in text and '{"content":' in text
    with_system = made.messages([MessagePart("system", "Be brief."), MessagePart("user", "hi")])
    assert with_system[0].content == f"Be brief.\n\n{text}" and len(with_system) == 2
    without = made.messages([MessagePart("user", "hi")])
    assert without[0] == MessagePart("system", text) and without[1].content == "hi"
    required = plan("generic", "required").system_text
    assert required is not None and '{"content"' not in required
    named = plan("generic", NAMED_SEARCH).system_text
    assert named is not None and "get_weather" not in named
    assert made.template_tools is None


def test_plan_detects_and_overrides_the_family() -> None:
    qwen = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    made = plan_tools(qwen, TOOLS)
    assert made is not None and made.family is HERMES and made.choice == AUTO
    assert plan_tools(qwen, TOOLS, family="generic").family is GENERIC  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown tool-call family"):
        plan_tools(qwen, TOOLS, family="qwen")
    llama = plan_tools(None, TOOLS, family="llama3")
    assert llama is not None and not llama.parallel  # one call per message in Llama 3


# ---------- real llama.cpp ----------


def _grammar_cases() -> dict[str, str]:
    cases: dict[str, str] = {}
    for family in FAMILY_NAMES:
        for label, made in (
            ("required", plan(family, "required", think=Think())),
            ("named", plan(family, NAMED_SEARCH, think=Think(opened=True))),
            ("auto", plan(family)),
        ):
            cases[f"{family}-{label}"] = grammar_of(made)
        if family != "generic":
            cases[f"{family}-lazy"] = grammar_of(plan(family), lazy=True)
    zoo = Grammar()
    alternatives = [zoo.schema(schema, f"s{i}") for i, (schema, _) in enumerate(SCHEMAS)]
    zoo.rules["root"] = " | ".join(alternatives)
    cases["schemas"] = zoo.text()
    return cases


GRAMMAR_CASES = _grammar_cases()


def _llama_accepts_grammar(
    completion_bin: str, model_path: str, grammar: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            completion_bin,
            "-m",
            model_path,
            "--grammar-file",
            str(grammar),
            "-n",
            "1",
            "-p",
            "Hi",
            "-c",
            "256",
            "--no-warmup",
            "-no-cnv",
            "--simple-io",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("case", sorted(GRAMMAR_CASES))
def test_llama_cpp_parses_every_generated_grammar(
    case: str, completion_bin: str, model_path: str, tmp_path: Path
) -> None:
    path = tmp_path / "g.gbnf"
    path.write_text(GRAMMAR_CASES[case])
    done = _llama_accepts_grammar(completion_bin, model_path, path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed to parse grammar" not in done.stderr


def test_llama_cpp_refuses_a_broken_grammar(
    completion_bin: str, model_path: str, tmp_path: Path
) -> None:
    # the check above can fail: a grammar with an undefined rule aborts llama-completion
    path = tmp_path / "g.gbnf"
    path.write_text(GRAMMAR_CASES["hermes-required"].replace("calls ::=", "callz ::=", 1))
    done = _llama_accepts_grammar(completion_bin, model_path, path)
    assert done.returncode != 0 and "parse" in done.stderr


def bound_template(source: str, tools: list[dict[str, Any]]) -> str:
    """``source`` with ``tools`` set inside it: LocalLLM renders templates without a
    tools variable today, so the test puts it there in the template's own language."""

    def literal(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "none"
        return json.dumps(value)

    return "{%- set tools = " + literal(tools) + " %}\n" + source


PROMPTS = [
    "What is the weather in Paris?",
    "Search the web for cheap flights to Rome.",
    "Is it raining in Oslo right now? Use fahrenheit.",
]
# The default model is tiny: unbounded strings can make it repeat itself until
# max_tokens, so every string the grammar lets it write is bounded here.
BOUNDED_TOOLS = [
    WEATHER,
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "maxLength": 40},
                    "limit": {"type": "integer", "minimum": 1},
                },
                "required": ["query"],
            },
        },
    },
]


def templated_llm(
    completion_bin: str, model_path: str, tmp_path: Path, made: ToolPlan, **options: Any
) -> LocalLLM:
    source = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    assert made.template_tools is not None
    template = tmp_path / "qwen-with-tools.jinja"
    template.write_text(bound_template(source, made.template_tools))
    return LocalLLM(
        binary_path=completion_bin,
        model=model_path,
        chat_template=str(template),
        grammar=grammar_of(made),
        temperature=0.0,
        **options,
    )


def test_the_default_model_under_the_required_grammar_makes_valid_calls(
    completion_bin: str, model_path: str, tmp_path: Path
) -> None:
    source = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    made = plan_tools(source, BOUNDED_TOOLS, "required", parallel=False)
    assert made is not None and made.family is HERMES
    llm = templated_llm(completion_bin, model_path, tmp_path, made, max_tokens=150, seed=3)
    for prompt in PROMPTS:
        reply = llm.generate([MessagePart("user", prompt)])
        assert reply.finish_reason == "stop", reply.text
        parsed = made.parse(reply.text)
        (call,) = parsed.tool_calls
        tool = next(t for t in made.tools if t.name == call.name)
        assert validate(call.arguments, tool.schema) == []
        assert parsed.text == "" and call.id.startswith("call_")


def test_the_default_model_under_the_eager_auto_grammar_always_parses(
    completion_bin: str, model_path: str, tmp_path: Path
) -> None:
    source = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    made = plan_tools(source, BOUNDED_TOOLS, "auto", parallel=False)
    assert made is not None
    llm = templated_llm(completion_bin, model_path, tmp_path, made, max_tokens=150)
    for prompt in PROMPTS[:2]:
        reply = llm.generate([MessagePart("user", prompt)])
        parsed = made.parse(reply.text, complete=reply.finish_reason != "length")
        assert "<tool_call>" not in parsed.text


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(completion_bin: str, model_path: str) -> Any:
    binary = str(Path(completion_bin).with_name("llama-server"))
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "-m",
            model_path,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "-c",
            "512",
            "--no-warmup",
            "-np",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            raise AssertionError("llama-server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/completion", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_llama_server_applies_a_lazy_grammar_from_its_trigger_on(server: str) -> None:
    # The request fields as ToolGrammar.server_fields writes them, on a case where the
    # model's own continuation is known: it counts on (" 4, 5, 6, 7,") until the
    # trigger "4" hands over to the grammar, which allows only "4!!!".
    lazy = ToolGrammar('root ::= "4" "!!!"\n', True, (("word", "4"),), ("4",))
    body = {"prompt": "Count: 1, 2, 3,", "n_predict": 12, "temperature": 0}
    status, answer = _post(server, {**body, **lazy.server_fields()})
    assert (status, answer.get("content")) == (200, " 4!!!")
    status, answer = _post(server, body)
    assert status == 200 and answer["content"].startswith(" 4, 5")
    # a trigger that is one token must also be a preserved token, which is why
    # server_fields always sends the family's markers
    fields = {**lazy.server_fields(), "preserved_tokens": []}
    status, answer = _post(server, {**body, **fields})
    assert status == 400 and "preserved token" in answer["error"]["message"]
    # a regex trigger hands over from its first group (llama3's "{")
    full = ToolGrammar('root ::= "4" "!!!"\n', True, (("pattern_full", r"\s*(4)[\s\S]*"),))
    status, answer = _post(server, {**body, **full.server_fields()})
    assert (status, answer.get("content")) == (200, " 4!!!")


def test_llama_server_takes_each_familys_lazy_tool_grammar(server: str) -> None:
    for family in ("hermes", "mistral_nemo", "mistral", "llama3"):
        made = plan_tools(None, BOUNDED_TOOLS, "auto", family=family)
        assert made is not None
        built = made.grammar(lazy=True)
        assert built is not None and built.lazy
        prompt = "<|im_start|>user\nWeather in Rome?<|im_end|>\n<|im_start|>assistant\n"
        status, answer = _post(
            server, {"prompt": prompt, "n_predict": 40, "temperature": 0, **built.server_fields()}
        )
        assert status == 200, (family, answer)
        made.parse(answer["content"], complete=answer.get("stop_type") != "limit")
    broken = {**built.server_fields(), "grammar": "root ::= undefined-rule\n"}
    status, _ = _post(server, {"prompt": "x", "n_predict": 1, **broken})
    assert status == 400


def test_llama_server_takes_a_learnt_format_s_lazy_grammar(server: str) -> None:
    """Learnt formats (tools/formats) on llama-server: the lazy grammar, its trigger
    and preserved tokens are accepted, and what the model writes parses."""
    from helpers.sdist_templates import chat_template, template_dir

    for name in ("Qwen3-Coder.jinja", "moonshotai-Kimi-K2.jinja", "LFM2.5-8B-A1B.jinja"):
        template = chat_template(template_dir() / name)
        made = plan_tools(template.source, BOUNDED_TOOLS, "auto", template=template)
        assert made is not None and made.family.name == "derived", name
        built = made.grammar(lazy=True)
        assert built is not None and built.lazy and built.triggers
        prompt = "<|im_start|>user\nWeather in Rome?<|im_end|>\n<|im_start|>assistant\n"
        status, answer = _post(
            server, {"prompt": prompt, "n_predict": 40, "temperature": 0, **built.server_fields()}
        )
        assert status == 200, (name, answer)
        made.parse(answer["content"], complete=answer.get("stop_type") != "limit")
