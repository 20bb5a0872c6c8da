"""interop.recognise and interop.shapes without the framework: stand-in framework modules
in ``sys.modules`` (texts of our own, fingerprinted here), a scripted transport, and the
GBNF recogniser and schema validator as oracles. The real framework's prompts and parsers
are tested in tests/scenarios/test_framework.py (``shapes``)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.gbnf_recogniser import accepts
from helpers.probes import run_python

from jazzmine.local import LocalLLM
from jazzmine.local.interop import recognise, shapes
from jazzmine.local.mock import MockReply, MockTransport
from jazzmine.local.request import GenerationRequest
from jazzmine.local.tools.validate import validate
from jazzmine.local.types import MessagePart

ENHANCER = "Stand-in enhancer prompt: return the six keys."
SUMMARY = "Stand-in summariser prompt."
SELECTOR = "Stand-in selector prompt."
SLOTS = "Stand-in slot prompt."
TITLE = "Stand-in title prompt."
AGENT = "You are {name}. {personality}\n\nStand-in protocol: reply in <response>."
AGENT_TOOLS = "You are {name}. {personality}\n\nStand-in protocol with <task> tags."

MODULES = {
    "jazzmine.core.message_enhancer": {"ENHANCEMENT_SYSTEM_PROMPT": ENHANCER},
    "jazzmine.core.conversation_summarizer": {"SUMMARIZER_SYSTEM_PROMPT": SUMMARY},
    "jazzmine.core.flows.selector": {"SELECTOR_SYSTEM_PROMPT": SELECTOR},
    "jazzmine.core.agent.prompts": {
        "_SLOT_EXTRACTION_SYSTEM": SLOTS,
        "_TITLE_GENERATION_SYSTEM": TITLE,
        "_SYSTEM_PROMPT_TEMPLATE": AGENT_TOOLS,
        "_SYSTEM_PROMPT_NO_TOOLS_TEMPLATE": AGENT,
    },
}


@pytest.fixture
def framework(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stand-in framework modules, already imported, whose prompts are 'known'."""
    monkeypatch.setitem(sys.modules, "jazzmine.core", types.ModuleType("jazzmine.core"))
    known = {}
    for name, constants in MODULES.items():
        module = types.ModuleType(name)
        for constant, text in constants.items():
            setattr(module, constant, text)
            known[(name, constant)] = frozenset({recognise._fingerprint(text)})
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(recognise, "_FINGERPRINTS", known)
    yield


def parts(system: str, *users: str) -> list[MessagePart]:
    return [MessagePart("system", system), *(MessagePart("user", u) for u in users)]


def agent_system(template: str = AGENT) -> str:
    return template.format(name="Basil", personality="A host.")


TURN = '<state status="idle" turn="1"/>\n\n<user_message>Can I bring my dog?</user_message>'


def test_nothing_is_recognised_without_the_framework() -> None:
    assert "jazzmine.core" not in sys.modules
    assert recognise.shape_for(parts(ENHANCER, "hi")) is None


def test_each_part_is_recognised_by_its_prompt(framework: None) -> None:
    selector_user = '<candidate id="book" type="flow">\n<candidate id="hours" type="flow">'
    slot_user = "Pending parameters:\n- guests (int, required): how many\n\nUser message: 4"
    found = {
        "message_enhancer": recognise.shape_for(parts(ENHANCER, "x")),
        "conversation_summarizer": recognise.shape_for(parts(SUMMARY, "x")),
        "flow_selector": recognise.shape_for(parts(SELECTOR, selector_user)),
        "slot_extraction": recognise.shape_for(parts(SLOTS, slot_user)),
        "conversation_title": recognise.shape_for(parts(TITLE, "x")),
        "agent_loop": recognise.shape_for(parts(agent_system(), TURN)),
    }
    for part, shape in found.items():
        assert shape is not None and shape.part == part, (part, shape)
    selector = found["flow_selector"]
    assert selector is not None and selector.json_schema == shapes.flow_ids(["book", "hours"])
    slots = found["slot_extraction"]
    assert slots is not None and slots.json_schema is not None
    assert slots.json_schema["properties"] == {"guests": {"type": "integer"}}


@pytest.mark.parametrize(
    "messages",
    [
        parts(ENHANCER + " ", "x"),  # another release's text
        parts("Stand-in enhancer prompt", "x"),
        [MessagePart("user", ENHANCER)],  # not the system message
        parts(SELECTOR, "no candidates here"),
        parts(SLOTS, "User message: nothing asked"),
        parts("You are Basil. A host.\n\nSomething else entirely.", TURN),
        parts("Be brief.", "Hello"),
    ],
)
def test_other_prompts_are_left_alone(framework: None, messages: list[MessagePart]) -> None:
    assert recognise.shape_for(messages) is None


def test_an_unknown_release_is_left_alone(framework: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same module and constant, but a text whose fingerprint is not listed."""
    monkeypatch.setattr(
        sys.modules["jazzmine.core.message_enhancer"], "ENHANCEMENT_SYSTEM_PROMPT", "v2 prompt"
    )
    assert recognise.shape_for(parts("v2 prompt", "x")) is None


def test_the_agent_loop_offers_only_what_the_turn_allows(framework: None) -> None:
    plain = recognise.shape_for(parts(agent_system(), TURN))
    assert plain is not None and plain.grammar is not None
    assert accepts(plain.grammar, "<response>Yes, dogs are welcome.</response>")
    for wrong in (
        "Can I bring my dog?",  # the echo, untagged
        "<response></response>",
        "<flow_complete/><response>Done.</response>",  # no active flow
        '<task sandbox="web" mode="plan">x</task>',  # no tools
        "<response>a</response> trailing",
    ):
        assert not accepts(plain.grammar, wrong), wrong
    turn = (
        '<state status="active" turn="2" flow="Book" step="1"/>\n<available_sandboxes>\n'
        '  <sandbox name="web">\n</available_sandboxes>\n<pending_confirmation action="pay">'
    )
    full = recognise.shape_for(parts(agent_system(AGENT_TOOLS), turn))
    assert full is not None and full.grammar is not None
    for right in (
        "<confirm/><response>Paid.</response>",
        "<cancel/><response>Cancelled.</response>",
        "<flow_complete/><response>All done.</response>",
        '<task sandbox="web" mode="interactive">Look it up</task>',
    ):
        assert accepts(full.grammar, right), right
    assert not accepts(full.grammar, '<task sandbox="db" mode="plan">x</task>')
    # After the loop's own follow-up (not a tool's result), only an answer.
    follow = [*parts(agent_system(AGENT_TOOLS), turn), MessagePart("user", "Answer now.")]
    answer_only = recognise.shape_for(follow)
    assert answer_only is not None and answer_only.grammar is not None
    assert not accepts(answer_only.grammar, '<task sandbox="web" mode="plan">x</task>')


def test_the_title_is_one_plain_line(framework: None) -> None:
    title = recognise.shape_for(parts(TITLE, "x"))
    assert title is not None and title.grammar is not None
    assert accepts(title.grammar, "Bringing a dog to Sunday dinner")
    for wrong in ('"Quoted"', "**Bold**", "Two\nlines", ""):
        assert not accepts(title.grammar, wrong), wrong


def test_the_json_shapes_take_what_the_parsers_read() -> None:
    enhancement = {
        "enhanced_query": "Can I bring my dog to the restaurant?",
        "sentiment_score": 0.2,
        "intent": "ask_pet_policy",
        "entities": [{"name": "dog", "attributes": ["pet"]}],
        "is_cancellation": False,
        "is_continuation": True,
    }
    assert validate(enhancement, shapes.ENHANCER) == []
    assert validate({**enhancement, "sentiment_score": 3}, shapes.ENHANCER) != []
    assert validate({k: v for k, v in enhancement.items() if k != "intent"}, shapes.ENHANCER)
    summary = {"short_summary": "A booking.", "long_summary": "The user booked a table."}
    assert validate(summary, shapes.SUMMARY) == []
    assert validate(["a"], shapes.flow_ids(["a", "b"])) == []
    assert validate([], shapes.flow_ids(["a", "b"])) != []  # [] is the selector's fallback
    assert validate(["c"], shapes.flow_ids(["a", "b"])) != []
    slots = shapes.slot_values([("guests", "int"), ("day", "str")])
    assert validate({"guests": 4}, slots) == [] and validate({}, slots) == []
    assert validate({"guests": "four"}, slots) != [] and validate({"other": 1}, slots) != []


def scripted(reply: str, seen: list[GenerationRequest]) -> MockTransport:
    def handler(request: GenerationRequest) -> MockReply:
        seen.append(request)
        return MockReply([reply])

    return MockTransport(handler)


def test_a_call_carries_the_parts_constraint_and_says_so(framework: None) -> None:
    seen: list[GenerationRequest] = []
    reply = json.dumps({"short_summary": "s.", "long_summary": "l."})
    llm = LocalLLM(transport=scripted(reply, seen), prompt_format="flat", max_tokens=64)
    response = llm.generate(parts(SUMMARY, "<episode>\nUSER: hi\n</episode>"))
    # the schema, compiled to compact JSON: one space at most between tokens
    grammar = seen[-1].grammar
    assert seen[-1].json_schema is None and grammar is not None
    assert accepts(grammar, reply)
    assert accepts(grammar, '{"short_summary":"s.","long_summary":"l."}')
    assert not accepts(grammar, json.dumps({"short_summary": "s.", "long_summary": "l."}, indent=2))
    assert not accepts(grammar, json.dumps({"short_summary": "s."}))
    assert seen[-1].max_tokens == 900  # the instance's 64 would cut the JSON short
    assert response.api_metrics is not None
    assert response.api_metrics["framework_part"] == "conversation_summarizer"
    assert response.api_metrics["framework_constraint"] == "json_schema"
    # A per-call max_tokens is the caller's word.
    llm.generate(parts(SUMMARY, "x"), max_tokens=32)
    assert seen[-1].max_tokens == 32


def test_a_binary_that_takes_no_grammar_gets_the_framework_text_as_it_is(
    framework: None,
) -> None:
    """A shape is held by a grammar; a binary that is not llama.cpp takes none, so the
    framework's call runs unconstrained instead of failing (its parser's fallback stands)."""
    seen: list[GenerationRequest] = []
    transport = MockTransport(
        lambda request: (seen.append(request), MockReply(["free text"]))[1],
        runs_llama_cpp=False,
    )
    llm = LocalLLM(transport=transport, prompt_format="flat", max_tokens=64)
    response = llm.generate(parts(SUMMARY, "<episode>\nUSER: hi\n</episode>"))
    assert seen[-1].json_schema is None and seen[-1].grammar is None
    assert response.text == "free text"
    assert response.api_metrics is not None and "framework_part" not in response.api_metrics


@pytest.mark.parametrize(
    ("instance", "call", "shaped"),
    [
        ({"framework_shapes": False}, {}, False),
        ({}, {"framework_shapes": False}, False),
        ({"framework_shapes": False}, {"framework_shapes": True}, True),
        ({"grammar": 'root ::= "x"'}, {}, False),  # the caller's constraint wins
        ({}, {"response_format": {"type": "json_object"}}, False),
    ],
)
def test_the_shapes_can_be_turned_off(
    framework: None, instance: dict[str, Any], call: dict[str, Any], shaped: bool
) -> None:
    seen: list[GenerationRequest] = []
    llm = LocalLLM(transport=scripted("x", seen), prompt_format="flat", **instance)
    response = llm.generate(parts(ENHANCER, "x"), **call)
    enhancer = shapes.Shape("message_enhancer", json_schema=shapes.ENHANCER).grammar_text()
    assert (seen[-1].grammar == enhancer) is shaped
    assert response.api_metrics is not None
    assert ("framework_part" in response.api_metrics) is shaped


def test_framework_shapes_is_checked_like_every_option() -> None:
    with pytest.raises(TypeError, match="framework_shapes"):
        LocalLLM(framework_shapes="no")  # type: ignore[arg-type]
    llm = LocalLLM(transport=scripted("x", []), prompt_format="flat")
    with pytest.raises(TypeError, match="framework_shapes"):
        llm.generate([MessagePart("user", "x")], framework_shapes=1)


def test_the_agent_loop_is_rendered_flat_on_the_default_model_only(
    framework: None, real_build: tuple[Path, Path], tmp_path: Path
) -> None:
    """On SmolLM2-135M the agent loop's reply echoes the user under the model's template
    and answers flat (README, measured): the loop alone is rendered flat there, under
    prompt_format="auto"; the other parts, other formats and other models keep theirs."""
    _, model = real_build
    loop = parts(agent_system(), TURN)
    llm = LocalLLM(model=model)
    assert llm.build_request(loop).prompt.startswith("System: ")  # the flattening
    assert "<|im_start|>" in llm.build_request(parts(ENHANCER, "x")).prompt
    assert (
        "<|im_start|>" in LocalLLM(model=model, prompt_format="template").build_request(loop).prompt
    )
    assert "<|im_start|>" in llm.build_request(loop, framework_shapes=False).prompt
    other = tmp_path / "other.gguf"
    other.symlink_to(model)  # the same weights under another name: not the default model
    assert "<|im_start|>" in LocalLLM(model=other).build_request(loop).prompt


_STANDALONE_CALL = """
import json, sys
from jazzmine.local import LocalLLM
from jazzmine.local.mock import MockReply, MockTransport
llm = LocalLLM(transport=MockTransport(lambda request: MockReply(["hi"])), prompt_format="flat")
llm.generate([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("jazzmine"))))
"""


def test_without_the_framework_nothing_of_interop_is_imported() -> None:
    """A call made without the framework never loads ``interop`` (nor looks for it)."""
    done = run_python(_STANDALONE_CALL, limit=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    loaded = json.loads(out)
    assert "jazzmine.local.call.prepare" in loaded  # the call was prepared
    assert not [
        name for name in loaded if name.startswith(("jazzmine.local.interop", "jazzmine.core"))
    ]


def test_a_flat_agent_reply_stays_on_one_line(framework: None) -> None:
    """Flattened, a new line is where a small model writes the user's next turn."""
    flat = recognise.shape_for(parts(agent_system(), TURN), flat=True)
    assert flat is not None and flat.grammar is not None and flat.flat_prompt
    assert accepts(flat.grammar, "<response>Sure, dogs are welcome.</response>")
    assert not accepts(flat.grammar, "<response>Sure.\n\nUser: and cats?</response>")
    free = recognise.shape_for(parts(agent_system(), TURN))
    assert free is not None and free.grammar is not None
    assert accepts(free.grammar, "<response>Sure.\n\n- dogs\n- cats</response>")
