"""The published jazzmine framework (0.1.42) running on this project's LocalLLM.

`tests/envs/framework.sh` (run by dev.sh at set-up) makes a virtualenv of its own with the
framework's wheel, the light libraries its LLM-calling parts import (pydantic, structlog)
and this project, editable. The scripts in tests/envs/framework_probe.py run there, in a
subprocess, with tests/framework_stubs on PYTHONPATH: import-only stand-ins for what the
framework's package ``__init__`` imports but these parts never use:

    torch, transformers, onnxruntime, onnxruntime.quantization   (EmbeddingService)
    asyncpg                                                     (Postgres message store)
    motor, motor.motor_asyncio                                  (MongoDB message store)
    boto3, aioboto3, botocore, botocore.exceptions              (Bedrock provider)
    docker, docker.errors                                       (tool sandboxes)

Any use of one raises, and is recorded: every script reports the uses and the tests
require none.

What is checked: LocalLLM is the framework's BaseLLM and its errors are caught by the
framework's ``except`` clauses with their details kept; the framework's MessageEnhancer,
FlowSelector, ConversationSummarizer and a whole agent turn (AgentBuilder, JSON message
store, no memory, tools or server) run on LocalLLM per call and warm, without taking the
path the framework takes when its provider raises. Where the framework parses JSON from the
model, a small model's free text may not parse: that is a different path (the framework's
safe defaults), reported apart. The same parts given a LocalLLM with a JSON schema
(``response_format``) must parse every time. An agent whose LocalLLM crashes is the
negative control: there the framework's error path must be seen.

Every test here but the first needs the framework's virtualenv (set-up, like the build),
so it is marked ``real``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import fakes

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests" / "framework_stubs"
PROBE = ROOT / "tests" / "envs" / "framework_probe.py"
MODES = ("percall", "warm")
TRANSPORT = {"percall": "per-call", "warm": "server"}
PROBE_TIMEOUT = 600  # a whole scenario: a dozen model calls on a loaded two-core machine
# The answer the framework's agent gives when its LLM raises.
AGENT_ERROR_REPLY = "I encountered an error"


def framework_venv() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(
        os.environ.get("JAZZMINE_FRAMEWORK_VENV") or default / "jazzmine" / "venv-framework"
    )


def framework_python() -> str:
    python = framework_venv() / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"no framework virtualenv at {framework_venv()}: run "
            f"`bash tests/envs/framework.sh .venv` (dev.sh does it at set-up)"
        )
    return str(python)


# Two five-turn conversations, about thirty model calls: on a loaded two-core machine each
# takes 10-40 s.
CONVERSATION_TIMEOUT = 2400


def run_probe(scenario: str, folder: Path, *args: str) -> dict[str, Any]:
    """Run one scenario of the probe in the framework's virtualenv; its JSON result."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "result.json"
    env = {**os.environ, "PYTHONPATH": str(STUBS), "JAZZMINE_LOCAL_SRC": str(ROOT / "src")}
    done = subprocess.run(
        [framework_python(), str(PROBE), scenario, "--out", str(out), *args],
        cwd=folder,  # the framework's AgentBuilder writes a state file where it runs
        env=env,
        capture_output=True,
        text=True,
        timeout=CONVERSATION_TIMEOUT if scenario == "conversation" else PROBE_TIMEOUT,
    )
    assert done.returncode == 0, f"probe {scenario} {args} failed:\n{done.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["stand_ins_used"] == [], "the framework used a stand-in library"
    return result


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """Each (scenario, arguments) is run once per module: the model scenarios are slow."""
    cache: dict[tuple[str, ...], dict[str, Any]] = {}

    def run(scenario: str, *args: str) -> dict[str, Any]:
        key = (scenario, *args)
        if key not in cache:
            cache[key] = run_probe(scenario, tmp_path_factory.mktemp(scenario), *args)
        return cache[key]

    return run


FRAMEWORK_MESSAGE_PART = "jazzmine.core.llm.types.MessagePart"


def assert_calls_succeeded(
    calls: list[dict[str, Any]], mode: str, *, framework_parts: bool = True
) -> None:
    assert calls, "the framework made no LLM call"
    for call in calls:
        assert "error" not in call, call
        assert call["transport"] == TRANSPORT[mode], call
        assert call["is_framework_response"], call
        if framework_parts:
            # The framework builds its own MessagePart objects; LocalLLM takes them as are.
            assert call["message_types"] == [FRAMEWORK_MESSAGE_PART], call


def assert_not_provider_error(
    part: dict[str, Any], mode: str, *, framework_parts: bool = True
) -> None:
    assert part["raised"] is None, part["raised"]
    assert part["outcome"] != "provider_error", part
    assert_calls_succeeded(part["calls"], mode, framework_parts=framework_parts)


def assert_no_fallback(part: dict[str, Any], mode: str, *, framework_parts: bool = True) -> None:
    assert_not_provider_error(part, mode, framework_parts=framework_parts)
    assert part["fallback_logs"] == [], part["fallback_logs"]
    assert part["outcome"] == "ok", part


# ---------------------------------------------------------------- without the framework


def test_without_the_framework_jazzmine_is_a_namespace_and_core_is_never_looked_for() -> None:
    """In the project's own virtualenv (no framework), importing and constructing LocalLLM
    neither imports nor even looks for ``jazzmine.core``."""
    code = r"""
import importlib.abc, json, sys

looked_for = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "jazzmine.core" or name.startswith("jazzmine.core."):
            looked_for.append(name)
        return None

sys.meta_path.insert(0, Watch())
import jazzmine
import jazzmine.local
from jazzmine.local import BaseLLM, LLMError, LLMResponse, LocalLLM, MessagePart
from jazzmine.local.framework import FRAMEWORK_PRESENT

LocalLLM().close()
print(json.dumps({
    "looked_for": looked_for,
    "imported": sorted(m for m in sys.modules if m.startswith("jazzmine.core")),
    "jazzmine_file": getattr(jazzmine, "__file__", None),
    "path_type": type(jazzmine.__path__).__name__,
    "framework_present": FRAMEWORK_PRESENT,
    "bases": {
        "BaseLLM": [c.__module__ for c in BaseLLM.__mro__],
        "LLMError": [c.__module__ for c in LLMError.__mro__],
        "LLMResponse": [c.__module__ for c in LLMResponse.__mro__],
        "MessagePart": [c.__module__ for c in MessagePart.__mro__],
    },
}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    assert found["looked_for"] == [] and found["imported"] == []
    assert found["jazzmine_file"] is None, "jazzmine is a regular package: is the framework here?"
    assert found["path_type"] == "_NamespacePath"
    assert found["framework_present"] is False
    for name, modules in found["bases"].items():
        assert not any(module.startswith("jazzmine.core") for module in modules), (name, modules)


# ---------------------------------------------------------------- with the framework


@pytest.mark.real
def test_local_llm_is_the_frameworks_base_llm(probe: Callable[..., dict[str, Any]]) -> None:
    found = probe("identity")
    assert found["framework_present"] is True
    assert found["jazzmine_file"].startswith(str(framework_venv())), found["jazzmine_file"]
    # The editable install must be this work tree, not another checkout's.
    assert Path(found["local_file"]).is_relative_to(ROOT / "src"), found["local_file"]
    assert found["local_llm_is_framework_base_llm"] is True
    assert found["framework_local_llm_is_ours"] is False  # the framework keeps its own
    assert all(found["errors_extend_framework"].values()), found["errors_extend_framework"]
    assert all(found["data_extend_framework"].values()), found["data_extend_framework"]
    assert all(found["same_fields"].values()), found["same_fields"]
    assert found["validated_messages"] == [
        ["system", "Be brief.", "jazzmine.local.types.MessagePart"],
        ["user", "Hello", "jazzmine.local.types.MessagePart"],
        ["assistant", "Hi", "jazzmine.local.types.MessagePart"],
    ]


@pytest.fixture(scope="module")
def errors(
    probe: Callable[..., dict[str, Any]],
    real_build: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("fakes")
    paths = []
    for name, body in (("crash", fakes.CRASH), ("hang", fakes.HANG)):
        path = folder / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
        paths.append(str(path))
    return probe("errors", "--crash", paths[0], "--hang", paths[1])


def test_a_timeout_is_caught_as_the_frameworks_timeout(errors: dict[str, Any]) -> None:
    real = errors["real_timeout"]  # the real binary, given 1 ms
    assert real["caught"] and real["type"] == "jazzmine.local.errors.LLMTimeoutError", real
    hung = errors["hang_timeout"]  # a binary that printed a word, then hung
    assert hung["caught"] and hung["type"] == "jazzmine.local.errors.LLMTimeoutError", hung
    assert hung["partial_text"] == "thinking"
    assert set(hung["framework_classes"]) == {"LLMError", "LLMTimeoutError"}


@pytest.mark.parametrize("case", ["crash", "crash_async", "crash_as_framework_base"])
def test_a_crash_is_caught_as_the_frameworks_internal_error(
    errors: dict[str, Any], case: str
) -> None:
    crash = errors[case]
    assert crash["caught"] and crash["type"] == "jazzmine.local.errors.LLMInternalError", crash
    # Our details stay on the error the framework's clause caught.
    assert crash["partial_text"] == "Hello from the model"
    assert "ggml_abort: something went wrong" in crash["stderr"]
    assert crash["signal_name"] == "SIGSEGV"
    assert crash["exit_code"] is not None


def test_an_agent_whose_llm_crashes_takes_the_frameworks_error_path(
    errors: dict[str, Any],
) -> None:
    """The negative control: the checks the next tests make do see the error path."""
    agent = errors["failing_agent"]
    assert agent["outcome"] == "provider_error"
    [turn] = agent["turns"]
    assert AGENT_ERROR_REPLY in turn["response"]
    kinds = {entry.split(":")[0] for entry in agent["provider_errors"]}
    assert {"enhancement_failed", "agent_llm_failed"} <= kinds, kinds
    assert agent["calls"] and all("LLMInternalError" in call["error"] for call in agent["calls"])


@pytest.fixture(scope="module")
def parts(
    probe: Callable[..., dict[str, Any]], real_build: tuple[Path, Path]
) -> Callable[[str], dict[str, Any]]:
    return lambda mode: probe("parts", "--mode", mode)


@pytest.fixture(scope="module")
def agents(
    probe: Callable[..., dict[str, Any]], real_build: tuple[Path, Path]
) -> Callable[[str], dict[str, Any]]:
    return lambda mode: probe("agent", "--mode", mode)


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_framework_message_parts_and_dicts_go_straight_in(
    parts: Callable[[str], dict[str, Any]], mode: str
) -> None:
    direct = parts(mode)["direct"]
    assert_no_fallback(direct, mode, framework_parts=False)
    # The two agenerate calls: the framework's MessageParts, then plain dicts.
    assert [call["message_types"] for call in direct["calls"]] == [
        [FRAMEWORK_MESSAGE_PART],
        ["builtins.dict"],
    ]
    replies = direct["result"]
    for way in ("framework_parts", "dicts", "astream", "generate"):
        assert replies[way].strip(), way
    assert replies["generate_is_framework_response"] and replies["usage_is_framework_usage"]


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_message_enhancer(parts: Callable[[str], dict[str, Any]], mode: str) -> None:
    results = parts(mode)
    plain = results["enhancer_plain"]
    assert_not_provider_error(plain, mode)
    [call] = plain["calls"]
    assert call["caller"] == "jazzmine.core.message_enhancer.enhance_message"

    shaped = results["enhancer_json"]  # the same, on a LocalLLM with the reply's schema
    assert_no_fallback(shaped, mode)
    enhanced = shaped["result"]
    assert enhanced["enhanced_message"].strip()
    assert enhanced["intent"].strip() and enhanced["intent"] != "unknown"
    assert enhanced["stored_intent"] == enhanced["intent"]  # the store was updated


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_flow_selector(parts: Callable[[str], dict[str, Any]], mode: str) -> None:
    results = parts(mode)
    plain = results["selector_plain"]
    assert_not_provider_error(plain, mode)
    [call] = plain["calls"]
    assert call["caller"] == "jazzmine.core.flows.selector._llm_select"
    assert plain["result"]["chosen"], "the selector must end with a flow, by choice or fallback"

    shaped = results["selector_json"]
    assert_no_fallback(shaped, mode)
    chosen = shaped["result"]["chosen"]
    assert chosen and set(chosen) <= set(shaped["result"]["candidates"])
    assert shaped["result"]["unresolved"] == []


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_conversation_summarizer(parts: Callable[[str], dict[str, Any]], mode: str) -> None:
    results = parts(mode)
    for name in ("summarizer_plain", "summarizer_json"):
        part = results[name]
        assert_not_provider_error(part, mode)
        assert part["result"]["episodes"] == 1 and len(part["result"]["memorised"]) == 1, part
        assert part["result"]["episode_ids"] == [1, 1, 1, 1]  # messages tagged in the store
    shaped = results["summarizer_json"]
    assert_no_fallback(shaped, mode)
    [episode] = shaped["result"]["memorised"]
    assert episode["short_summary"].strip() and episode["long_summary"].strip()


def assert_turns_answered(agent: dict[str, Any], mode: str, turns: int) -> None:
    assert agent["outcome"] != "provider_error", agent
    assert agent["provider_errors"] == []
    assert len(agent["turns"]) == turns
    for turn in agent["turns"]:
        assert turn["response"].strip(), turn
        assert AGENT_ERROR_REPLY not in turn["response"], turn
    assert_calls_succeeded(agent["calls"], mode)
    callers = [call["caller"] for call in agent["calls"]]
    assert callers.count("jazzmine.core.agent.core._run_agent_loop") >= turns, callers
    assert callers.count("jazzmine.core.message_enhancer.enhance_message") == turns, callers
    # The framework's own record of the turn: every LLM call a success.
    assert agent["trace_llm_calls"] and all(ok for _, ok in agent["trace_llm_calls"])
    assert agent["stored_roles"] == ["user", "assistant"] * turns


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_agent_built_with_local_llm_answers(
    agents: Callable[[str], dict[str, Any]], mode: str
) -> None:
    """AgentBuilder(...).with_llm(LocalLLM()): the framework's minimal wiring."""
    agent = agents(mode)["minimal"]
    assert_turns_answered(agent, mode, turns=2)


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_agent_with_schema_bound_enhancer_and_summarizer_takes_no_fallback(
    agents: Callable[[str], dict[str, Any]], mode: str
) -> None:
    agent = agents(mode)["json_enhancer_and_summarizer"]
    assert_turns_answered(agent, mode, turns=2)
    assert agent["fallback_logs"] == [], agent["fallback_logs"]
    assert agent["outcome"] == "ok"
    # Four messages reach the summariser's trigger of three: it ran after the second turn.
    assert len(agent["memorised"]) == 1, agent["memorised"]
    callers = [call["caller"] for call in agent["calls"]]
    assert "jazzmine.core.conversation_summarizer._summarize" in callers


# ---------------------------------------------------------------- the parts' shapes (issue 20)


@pytest.mark.real
def test_each_parts_constraint_takes_only_what_its_own_parser_reads(
    probe: Callable[..., dict[str, Any]],
) -> None:
    """The framework's own prompts, built into requests (nothing runs); replies meeting
    each constraint (by the GBNF recogniser and the schema validator) fed to that part's
    own parser."""
    found = probe("shapes")
    parts = (
        "message_enhancer",
        "conversation_summarizer",
        "flow_selector",
        "slot_extraction",
        "conversation_title",
        "agent_loop",
    )
    for part in parts:
        shape = found[part]
        assert shape["constrained"], part
        assert all(shape["meets"]) and all(shape["parses"]), (part, shape)
        assert shape["refuses_free_text"], part
        assert shape["off_unconstrained"], part  # framework_shapes=False
        assert shape["other_text_unconstrained"], part  # a prompt not known: left alone


@pytest.fixture(scope="module")
def conversations(
    probe: Callable[..., dict[str, Any]], real_build: tuple[Path, Path]
) -> Callable[..., dict[str, Any]]:
    return lambda mode, shapes="on": probe("conversation", "--mode", mode, "--shapes", shapes)


# Every part a five-turn conversation on the agent's own LLM reaches, and its constraint.
PARTS_REACHED = {
    "jazzmine.core.message_enhancer.enhance_message": ("message_enhancer", "json_schema"),
    "jazzmine.core.agent.core._run_agent_loop": ("agent_loop", "grammar"),
    "jazzmine.core.agent.core._generate_title_with_llm": ("conversation_title", "grammar"),
    "jazzmine.core.conversation_summarizer._summarize": (
        "conversation_summarizer",
        "json_schema",
    ),
    "jazzmine.core.flows.selector._llm_select": ("flow_selector", "json_schema"),
}


def assert_every_step_parses(agent: dict[str, Any], mode: str) -> None:
    assert_turns_answered(agent, mode, turns=5)
    assert agent["fallback_logs"] == [], agent["fallback_logs"]
    assert [turn["fallbacks"] for turn in agent["turns"]] == [0] * 5
    assert agent["outcome"] == "ok"
    for call in agent["calls"]:
        expected = PARTS_REACHED[call["caller"]]
        assert (call["framework_part"], call["framework_constraint"]) == expected, call
    callers = {call["caller"] for call in agent["calls"]}
    assert "jazzmine.core.conversation_summarizer._summarize" in callers
    assert "jazzmine.core.agent.core._generate_title_with_llm" in callers
    assert agent["title"], agent["title"]


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_five_turns_on_the_agents_own_local_llm_take_no_fallback(
    conversations: Callable[..., dict[str, Any]], mode: str
) -> None:
    """AgentBuilder(...).with_llm(LocalLLM(...)) and nothing else: every part's reply
    parses, every turn, and no reply merely repeats the user's message."""
    assert_every_step_parses(conversations(mode)["plain"], mode)


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_five_turns_with_the_frameworks_flow_selector_take_no_fallback(
    conversations: Callable[..., dict[str, Any]], mode: str
) -> None:
    found = conversations(mode)
    agent = found["flows"]
    assert_every_step_parses(agent, mode)
    selections = [
        call for call in agent["calls"] if call["caller"].endswith("selector._llm_select")
    ]
    assert selections, "the selector never asked the model"
    for call in selections:
        assert set(json.loads(call["text"])) <= set(found["flow_ids"]), call


@pytest.mark.real
@pytest.mark.parametrize("mode", MODES)
def test_no_reply_merely_repeats_the_users_message(
    conversations: Callable[..., dict[str, Any]], mode: str
) -> None:
    for variant in ("plain", "flows"):
        echoed = [turn for turn in conversations(mode)[variant]["turns"] if turn["echo"]]
        assert echoed == [], echoed


@pytest.mark.real
def test_with_the_shapes_off_the_same_conversation_falls_back(
    conversations: Callable[..., dict[str, Any]],
) -> None:
    """The negative control of the checks above: without the parts' constraints the same
    five turns on the default model do take the framework's fallbacks, and are seen to."""
    agent = conversations("percall", "off")["plain"]
    assert_turns_answered(agent, "percall", turns=5)
    assert all(call["framework_part"] is None for call in agent["calls"])
    assert sum(turn["fallbacks"] for turn in agent["turns"]) > 0, agent["turns"]


def test_warm_each_part_reads_its_long_prefix_once(
    conversations: Callable[..., dict[str, Any]],
) -> None:
    """Warm, the parts alternate on one server slot; its RAM prompt cache restores each
    part's prompt from its previous call, so from a part's second call on, its system
    prompt (and whatever else it shares with that call) is not read again. What is read is
    the turn's own text, which the framework's prompts place early (the enhancer's raw
    message, the agent's turn state): the share varies with it (README, measured)."""
    agent = conversations("warm")["plain"]
    seen: dict[str, list[dict[str, Any]]] = {}
    for call in agent["calls"]:
        seen.setdefault(call["framework_part"], []).append(call)
    assert {"message_enhancer", "agent_loop"} <= set(seen), set(seen)
    for part, calls in seen.items():
        assert calls[0]["prompt_tokens_reused"] is not None, part  # the server counts
        for call in calls[1:]:
            share = call["prompt_tokens_reused"] / call["prompt_tokens"]
            assert share >= 0.3, (part, call["prompt_tokens_reused"], call["prompt_tokens"])
