"""Runs the published jazzmine framework's LLM-calling parts on this project's LocalLLM.

Run by tests/scenarios/test_framework.py (and reused by bench/agent.py) inside the framework's
virtualenv (tests/envs/framework.sh), with tests/framework_stubs on PYTHONPATH:

    python framework_probe.py identity --out RESULT.json
    python framework_probe.py errors --out RESULT.json --crash FAKE --hang FAKE
    python framework_probe.py parts --mode percall|warm --out RESULT.json
    python framework_probe.py agent --mode percall|warm --out RESULT.json
    python framework_probe.py shapes --out RESULT.json
    python framework_probe.py conversation --mode percall|warm [--shapes on|off] --out RESULT.json

JAZZMINE_LOCAL_SRC names the src directory whose jazzmine.local is imported (the tests set
it to their own tree's).

It writes what happened as JSON; the test asserts on it. Run it in a scratch
directory: the framework's AgentBuilder writes a state file into the working directory.

What the framework does when something goes wrong is the point, so every part's result
tells its paths apart:
  * ``provider_error``: the LLM call raised (the framework then answers "I encountered an
    error", or the exception leaves the part);
  * ``parse_fallback``: the call returned, but the framework could not use the text (the
    enhancer's and summariser's safe defaults, the selector's "falling back" to the top
    candidate): what the model wrote, not the provider, failed;
  * ``raised``: something other than an LLM call raised (a bug here or in the framework);
  * ``ok``: none of these.
Each LLM call is recorded (caller, messages' types, reply, transport, error) by wrapping the
instance's ``agenerate``; the framework's log records are captured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import _stand_in  # from tests/framework_stubs: which stand-ins the framework touched

import jazzmine

# The virtualenv's editable install points at one checkout; JAZZMINE_LOCAL_SRC (set by the
# tests to their own tree's src) puts that tree's jazzmine.local first.
if os.environ.get("JAZZMINE_LOCAL_SRC"):
    jazzmine.__path__.insert(0, os.path.join(os.environ["JAZZMINE_LOCAL_SRC"], "jazzmine"))

import jazzmine.core.llm as framework
from jazzmine.core.builder import AgentBuilder
from jazzmine.core.conversation_summarizer import ConversationSummarizer
from jazzmine.core.flows import Flow, FlowSelector
from jazzmine.core.message_enhancer import MessageEnhancer
from jazzmine.core.message_store import Message, MessageRole, MessageStore

import jazzmine.local
from jazzmine.local import LocalLLM
from jazzmine.local.framework import FRAMEWORK_PRESENT

# The answer the framework's agent gives when its LLM raises (jazzmine/core/agent/core.py).
AGENT_ERROR_REPLY = "I encountered an error"
# Entries of AgentTurnResult.errors that mean an LLM call raised.
PROVIDER_ERROR_KINDS = (
    "enhancement_failed",
    "agent_llm_failed",
    "agent_repair_llm_failed",
    "agent_final_llm_failed",
    "title_generation_llm_failed",
)
# Generous: a call on a loaded two-core machine; a hang must still end the run.
CALL_TIMEOUT = 180.0
FREE_TEXT_TOKENS = 96
JSON_TOKENS = 768


# ---------------------------------------------------------------- observation


def _extends_fields(ours: type, theirs: type) -> bool:
    import dataclasses

    mine = list(ours.__dataclass_fields__)
    base = list(theirs.__dataclass_fields__)
    added = [f for f in dataclasses.fields(ours) if f.name not in base]  # type: ignore[arg-type]
    defaulted = all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in added
    )
    return mine[: len(base)] == base and defaulted


def qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def role_of(message: Any) -> str:
    return str(message["role"] if isinstance(message, Mapping) else message.role)


class CallLog:
    """Every agenerate call of the watched LocalLLMs, in order."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def watch(self, llm: Any, label: str) -> Any:
        """Record ``llm``'s agenerate calls; the framework is still handed this very
        LocalLLM instance (only its bound method is wrapped)."""
        original = llm.agenerate

        async def agenerate(messages: Sequence[Any], **kwargs: Any) -> Any:
            caller = sys._getframe(1)
            entry: dict[str, Any] = {
                "llm": label,
                "caller": f"{caller.f_globals.get('__name__')}.{caller.f_code.co_name}",
                "roles": [role_of(message) for message in messages],
                "message_types": sorted({qualified(type(message)) for message in messages}),
            }
            started = time.perf_counter()
            try:
                response = await original(messages, **kwargs)
            except Exception as error:
                entry["error"] = f"{qualified(type(error))}: {error}"
                raise
            finally:
                entry["seconds"] = round(time.perf_counter() - started, 3)
                self.calls.append(entry)
            metrics = response.api_metrics or {}
            entry.update(
                text=response.text,
                finish_reason=response.finish_reason,
                completion_tokens=response.usage.completion_tokens,
                prompt_tokens=response.usage.prompt_tokens,
                prompt_tokens_reused=metrics.get("prompt_tokens_reused"),
                framework_part=metrics.get("framework_part"),
                framework_constraint=metrics.get("framework_constraint"),
                transport=metrics.get("transport"),
                prompt_format=metrics.get("prompt_format"),
                response_type=qualified(type(response)),
                is_framework_response=isinstance(response, framework.LLMResponse),
            )
            return response

        llm.agenerate = agenerate
        return llm

    def since(self, start: int) -> list[dict[str, Any]]:
        return self.calls[start:]


class LogCapture(logging.Handler):
    """The framework's log records (its fallbacks are logged, not raised)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(
            {"logger": record.name, "level": record.levelname, "message": record.getMessage()}
        )

    def since(self, start: int) -> list[dict[str, str]]:
        return self.records[start:]


def fallback_records(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """Records of the framework taking a fallback path: its warnings and errors, and the
    selector's "falling back to top candidate" (logged at INFO)."""
    return [
        record
        for record in records
        if record["logger"].startswith("jazzmine.core")
        and (
            record["level"] in ("WARNING", "ERROR", "CRITICAL")
            or "falling back" in record["message"]
        )
    ]


class Observer:
    def __init__(self) -> None:
        self.calls = CallLog()
        self.logs = LogCapture()
        root = logging.getLogger("jazzmine")
        root.setLevel(logging.INFO)
        root.addHandler(self.logs)

    async def part(self, body: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run one framework part; its outcome, calls, fallback log records and result."""
        first_call, first_record = len(self.calls.calls), len(self.logs.records)
        result: dict[str, Any] = {}
        raised = None
        try:
            result = await body()
        except Exception as error:
            raised = f"{qualified(type(error))}: {error}"
        calls = self.calls.since(first_call)
        fallbacks = fallback_records(self.logs.since(first_record))
        if any("error" in call for call in calls):
            outcome = "provider_error"
        elif raised is not None:
            outcome = "raised"  # not from an LLM call: a bug here or in the framework
        elif fallbacks:
            outcome = "parse_fallback"
        else:
            outcome = "ok"
        return {
            "outcome": outcome,
            "raised": raised,
            "calls": calls,
            "fallback_logs": fallbacks,
            "result": result,
        }


def local_llm(mode: str, **options: Any) -> LocalLLM:
    """The project's LocalLLM on its defaults (embedded llama.cpp, default model)."""
    options.setdefault("timeout", CALL_TIMEOUT)
    options.setdefault("seed", 1)
    if mode == "warm":
        options["keep_alive"] = 60
    return LocalLLM(**options)


def json_schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def text(maximum: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": maximum}


# The shapes the framework's prompts ask for, as JSON schemas: with one, llama.cpp's grammar
# makes even a 135M model's reply parse. The framework passes no response_format itself;
# each part takes its own LLM, so the LocalLLM given to it carries the schema.
ENHANCER_SCHEMA = {
    "type": "object",
    "properties": {
        "enhanced_query": text(300),
        "sentiment_score": {"type": "number"},
        "intent": text(60),
        "entities": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "name": text(60),
                    "attributes": {"type": "array", "maxItems": 3, "items": text(40)},
                },
                "required": ["name", "attributes"],
                "additionalProperties": False,
            },
        },
        "is_cancellation": {"type": "boolean"},
        "is_continuation": {"type": "boolean"},
    },
    "required": [
        "enhanced_query",
        "sentiment_score",
        "intent",
        "entities",
        "is_cancellation",
        "is_continuation",
    ],
    "additionalProperties": False,
}
SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {"short_summary": text(200), "long_summary": text(600)},
    "required": ["short_summary", "long_summary"],
    "additionalProperties": False,
}


def flow_ids_schema(ids: list[str]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "enum": ids},
        "minItems": 1,
        "maxItems": 2,
    }


# ---------------------------------------------------------------- conversation material

USER, AGENT = "u-1", "trattoria"


def message(conversation: str, role: MessageRole, content: str, stamp: int) -> Message:
    return Message(
        id=f"{conversation}-{stamp}",
        conversation_id=conversation,
        user_id=USER,
        role=role,
        original_content=content,
        timestamp=stamp,
    )


HISTORY = [
    (MessageRole.USER, "I'd like to book a table at your restaurant for Friday evening."),
    (MessageRole.ASSISTANT, "Of course. For how many people, and at what time?"),
    (MessageRole.USER, "Four people, around eight."),
    (MessageRole.ASSISTANT, "A table for four on Friday at 8 pm is reserved."),
]
FOLLOW_UP = "Actually, can you make it for five instead?"


def restaurant_flows() -> list[Flow]:
    examples = {
        "book_table": [
            "I want to reserve a table",
            "Book a table for two tonight",
            "Can I get a reservation on Friday?",
            "Table for four at 8pm please",
            "I'd like to make a booking",
        ],
        "opening_hours": [
            "When are you open?",
            "What time do you close on Sunday?",
            "Are you open on Monday?",
            "Opening hours please",
            "Until when can I come in?",
        ],
        "cancel_booking": [
            "Cancel my reservation",
            "I can't come tonight, cancel it",
            "Please drop my booking for Friday",
            "Remove my table reservation",
            "We won't make it, cancel please",
        ],
    }
    about = {
        "book_table": ("Book a table", "Reserve a table.", "The user wants a new reservation."),
        "opening_hours": (
            "Opening hours",
            "Tell the opening hours.",
            "The user asks when we open.",
        ),
        "cancel_booking": (
            "Cancel a booking",
            "Cancel a reservation.",
            "The user cancels a booking.",
        ),
    }
    return [
        Flow(
            name=about[flow_id][0],
            description=about[flow_id][1],
            condition=about[flow_id][2],
            desired_effects=[about[flow_id][1]],
            examples=examples[flow_id],
            flow_id=flow_id,
        )
        for flow_id in examples
    ]


def candidates_of(flows: list[Flow]) -> list[dict[str, Any]]:
    """The metadata ProceduralMemory.recall() would return (it needs Qdrant and embeddings)."""
    return [
        {
            "flow_id": flow.id,
            "flow_name": flow.name,
            "flow_type": "flow",
            "description": flow.description,
            "condition": flow.condition,
            "desired_effects": flow.desired_effects,
        }
        for flow in flows
    ]


class EpisodeRecorder:
    """Stands in for the framework's EpisodicMemory, which needs a Qdrant server: keeps what
    the summariser memorises."""

    def __init__(self) -> None:
        self.episodes: list[dict[str, Any]] = []

    async def memorize(self, **fields: Any) -> None:
        self.episodes.append({key: fields[key] for key in ("short_summary", "long_summary")})

    async def recall(self, *args: Any, **kwargs: Any) -> dict[str, list[Any]]:
        return {"same_conversation": [], "previous_conversations": []}


async def json_store(folder: Path, name: str) -> Any:
    """The framework's own JSON message store, in a file of its own."""
    path = folder / f"{name}.json"
    path.write_text("{}")
    return await MessageStore.initialize({"storage": "json", "path": str(path)})


# ---------------------------------------------------------------- scenarios


def scenario_identity(_: argparse.Namespace) -> dict[str, Any]:
    from jazzmine.local import errors, types
    from jazzmine.local.prompt.messages import validate_messages

    llm = LocalLLM()
    names = [
        "LLMError",
        "LLMTimeoutError",
        "LLMRateLimitError",
        "LLMConnectionError",
        "LLMInvalidRequestError",
        "LLMInternalError",
    ]
    checked = validate_messages(
        [
            framework.MessagePart(role="system", content="Be brief."),
            {"role": "user", "content": "Hello"},
            types.MessagePart(role="assistant", content="Hi"),
        ]
    )
    return {
        "framework_present": FRAMEWORK_PRESENT,
        "jazzmine_file": jazzmine.__file__,
        "local_file": jazzmine.local.__file__,
        "local_llm_is_framework_base_llm": isinstance(llm, framework.BaseLLM),
        "framework_local_llm_is_ours": framework.LocalLLM is LocalLLM,
        "errors_extend_framework": {
            name: issubclass(getattr(errors, name), getattr(framework.errors, name))
            for name in names
        },
        "data_extend_framework": {
            name: issubclass(getattr(types, name), getattr(framework.types, name))
            for name in ("LLMUsage", "LLMResponse", "MessagePart")
        },
        # the framework's fields, in its order, then only fields with defaults (tool
        # calls, reasoning), so code that builds them positionally is untouched
        "same_fields": {
            name: _extends_fields(getattr(types, name), getattr(framework.types, name))
            for name in ("LLMUsage", "LLMResponse", "MessagePart")
        },
        "validated_messages": [
            [part.role, part.content, qualified(type(part))] for part in checked
        ],
        "stand_ins_used": list(_stand_in.USED),
    }


def describe_error(error: BaseException) -> dict[str, Any]:
    return {
        "type": qualified(type(error)),
        "message": str(error),
        "partial_text": getattr(error, "partial_text", None),
        "stderr": getattr(error, "stderr", None),
        "exit_code": getattr(error, "exit_code", None),
        "signal_name": getattr(error, "signal_name", None),
        "framework_classes": [
            name
            for name in ("LLMError", "LLMTimeoutError", "LLMInternalError")
            if isinstance(error, getattr(framework.errors, name))
        ],
    }


def caught_by(framework_class: type[BaseException], call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call`` under ``except framework_class``: was it that clause that caught?"""
    try:
        call()
    except framework_class as error:
        return {"caught": True, **describe_error(error)}
    except Exception as error:
        return {"caught": False, **describe_error(error)}
    return {"caught": False, "type": None}


async def acaught_by(
    framework_class: type[BaseException], call: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    try:
        await call()
    except framework_class as error:
        return {"caught": True, **describe_error(error)}
    except Exception as error:
        return {"caught": False, **describe_error(error)}
    return {"caught": False, "type": None}


def scenario_errors(options: argparse.Namespace) -> dict[str, Any]:
    question = [framework.MessagePart(role="user", content="Say hello.")]
    real_timeout = LocalLLM(timeout=0.001, max_tokens=8)
    crash = LocalLLM(binary_path=options.crash, timeout=30)
    hang = LocalLLM(binary_path=options.hang, timeout=1.5)
    results: dict[str, Any] = {
        "real_timeout": caught_by(
            framework.LLMTimeoutError, lambda: real_timeout.generate(question)
        ),
        "hang_timeout": caught_by(framework.LLMTimeoutError, lambda: hang.generate(question)),
        "crash": caught_by(framework.LLMInternalError, lambda: crash.generate(question)),
        "crash_async": asyncio.run(
            acaught_by(framework.LLMInternalError, lambda: crash.agenerate(question))
        ),
        "crash_as_framework_base": caught_by(
            framework.errors.LLMError, lambda: crash.generate(question)
        ),
    }
    # The negative control of the agent checks: an agent whose LLM crashes. The framework
    # must be seen taking its error path here, or the checks could never fail.
    results["failing_agent"] = asyncio.run(
        agent_turns(LocalLLM(binary_path=options.crash, timeout=30), ["Hello?"])
    )
    results["stand_ins_used"] = list(_stand_in.USED)
    return results


async def run_parts(mode: str, folder: Path) -> dict[str, Any]:
    observer = Observer()
    watch = observer.calls.watch
    plain = watch(local_llm(mode, max_tokens=FREE_TEXT_TOKENS), "plain")
    shaped_enhancer = watch(
        local_llm(
            mode,
            max_tokens=JSON_TOKENS,
            response_format=json_schema("enhancement", ENHANCER_SCHEMA),
        ),
        "json-schema",
    )
    shaped_summary = watch(
        local_llm(
            mode, max_tokens=JSON_TOKENS, response_format=json_schema("episode", SUMMARY_SCHEMA)
        ),
        "json-schema",
    )
    flows = restaurant_flows()  # the registry holds flows weakly: keep them referenced
    ids = [flow.id for flow in flows]
    shaped_selector = watch(
        local_llm(mode, max_tokens=64, response_format=json_schema("flows", flow_ids_schema(ids))),
        "json-schema",
    )
    results: dict[str, Any] = {}

    async def enhance(llm: LocalLLM, name: str) -> dict[str, Any]:
        store = await json_store(folder, name)
        conversation = f"enhance-{name}"
        for stamp, (role, content) in enumerate(HISTORY, start=1):
            await store.store_message(message(conversation, role, content, stamp))
        current = message(conversation, MessageRole.USER, FOLLOW_UP, len(HISTORY) + 1)
        await store.store_message(current)
        enhanced = await MessageEnhancer(llm=llm, message_store=store).enhance_message(current)
        stored = await store.get_message_by_id(current.id)
        await store.close()
        return {
            "enhanced_message": enhanced.enhanced_message,
            "intent": enhanced.intent,
            "sentiment_score": enhanced.sentiment_score,
            "entities": [entity.name for entity in enhanced.entities],
            "is_continuation": enhanced.is_continuation,
            "stored_intent": stored.intent if stored is not None else None,
        }

    async def select(llm: LocalLLM) -> dict[str, Any]:
        from jazzmine.core.flows import BaseFlow

        selector = FlowSelector(llm=llm, flow_registry=BaseFlow.registry)
        chosen = await selector.select(
            "I want to reserve a table for four people on Friday at 8pm.",
            candidates=candidates_of(flows),
        )
        return {
            "chosen": [flow.id for flow in chosen.chosen_flows],
            "unresolved": chosen.unresolved_ids,
            "candidates": ids,
        }

    async def summarise(llm: LocalLLM, name: str) -> dict[str, Any]:
        store = await json_store(folder, name)
        conversation = f"summary-{name}"
        for stamp, (role, content) in enumerate(HISTORY, start=1):
            await store.store_message(message(conversation, role, content, stamp))
        memory = EpisodeRecorder()
        summariser = ConversationSummarizer(
            llm=llm, episodic_memory=memory, message_store=store, trigger=3
        )
        episodes = await summariser.run(conversation, USER, AGENT)
        tagged = [m.episode_id for m in await store.get_messages_by_conversation_id(conversation)]
        await store.close()
        return {"episodes": episodes, "memorised": memory.episodes, "episode_ids": tagged}

    async def direct() -> dict[str, Any]:
        """The framework's MessagePart and plain dicts straight into LocalLLM."""
        system = framework.MessagePart(role="system", content="Answer in one short sentence.")
        question = framework.MessagePart(role="user", content="What colour is the sky?")
        replies = {
            "framework_parts": (await plain.agenerate([system, question])).text,
            "dicts": (
                await plain.agenerate(
                    [
                        {"role": "system", "content": system.content},
                        {"role": "user", "content": question.content},
                    ]
                )
            ).text,
        }
        pieces = [piece async for piece in plain.astream([system, question])]
        replies["astream"] = "".join(pieces)
        response = await asyncio.to_thread(plain.generate, [system, question])
        replies["generate"] = response.text
        replies["generate_is_framework_response"] = isinstance(response, framework.LLMResponse)
        replies["usage_is_framework_usage"] = isinstance(response.usage, framework.LLMUsage)
        return replies

    try:
        results["direct"] = await observer.part(direct)
        results["enhancer_plain"] = await observer.part(lambda: enhance(plain, "plain"))
        results["enhancer_json"] = await observer.part(lambda: enhance(shaped_enhancer, "json"))
        results["selector_plain"] = await observer.part(lambda: select(plain))
        results["selector_json"] = await observer.part(lambda: select(shaped_selector))
        results["summarizer_plain"] = await observer.part(lambda: summarise(plain, "plain"))
        results["summarizer_json"] = await observer.part(lambda: summarise(shaped_summary, "json"))
    finally:
        for llm in (plain, shaped_enhancer, shaped_summary, shaped_selector):
            await llm.aclose()
    return results


async def agent_turns(
    llm: Any,
    contents: list[str],
    *,
    enhancer_llm: Any = None,
    summary_llm: Any = None,
    folder: Path | None = None,
    observer: Observer | None = None,
    flow_selector: Any = None,
) -> dict[str, Any]:
    """Build an agent with the framework's AgentBuilder (JSON message store, no memory, no
    tools, no server) on ``llm``, and have one conversation of ``contents``."""
    observer = observer or Observer()
    observer.calls.watch(llm, "agent")
    builder = AgentBuilder(
        name="Basil",
        agent_id=AGENT,
        personality="A friendly host at a small Italian restaurant.",
    ).with_llm(llm)
    memory = EpisodeRecorder()
    if flow_selector is not None:
        builder.with_flow_selector(flow_selector)
    if enhancer_llm is not None or summary_llm is not None:
        assert folder is not None
        store = await json_store(folder, f"agent-{time.monotonic_ns()}")
        builder.with_message_store(store)
        if enhancer_llm is not None:
            observer.calls.watch(enhancer_llm, "json-schema")
            builder.with_enhancer(MessageEnhancer(llm=enhancer_llm, message_store=store))
        if summary_llm is not None:
            observer.calls.watch(summary_llm, "json-schema")
            builder.with_summarizer(
                ConversationSummarizer(
                    llm=summary_llm, episodic_memory=memory, message_store=store, trigger=3
                )
            )
    first_call, first_record = len(observer.calls.calls), len(observer.logs.records)
    agent, teardown = await builder.build()
    turns = []
    try:
        for content in contents:
            started = time.perf_counter()
            calls_before, records_before = len(observer.calls.calls), len(observer.logs.records)
            turn = await agent.chat(user_id=USER, conversation_id="dinner", content=content)
            turns.append(
                {
                    "content": content,
                    "response": turn.response,
                    "errors": turn.errors,
                    "turn_number": turn.turn_number,
                    "seconds": round(time.perf_counter() - started, 3),
                    # This turn's own; the summariser runs in the background and its
                    # call may land in a later turn.
                    "fallbacks": len(fallback_records(observer.logs.since(records_before))),
                    "prompt_tokens": sum(
                        call.get("prompt_tokens") or 0
                        for call in observer.calls.since(calls_before)
                    ),
                    "echo": echoes(content, turn.response),
                }
            )
        # Let the background summariser finish inside the observed window.
        await agent.drain()
        stored = await agent.message_store.get_messages_by_conversation_id("dinner")
        traces = await agent.message_store.get_turn_traces_by_conversation_id("dinner")
        conversation = await agent.message_store.get_conversation_by_id("dinner")
    finally:
        await teardown()
        for extra in (enhancer_llm, summary_llm):
            if extra is not None:
                await extra.aclose()
    calls = observer.calls.since(first_call)
    fallbacks = fallback_records(observer.logs.since(first_record))
    provider_errors = [
        entry
        for turn in turns
        for entry in turn["errors"]
        if entry.startswith(PROVIDER_ERROR_KINDS)
    ]
    if (
        provider_errors
        or any("error" in call for call in calls)
        or any(AGENT_ERROR_REPLY in turn["response"] for turn in turns)
    ):
        outcome = "provider_error"
    elif fallbacks:
        outcome = "parse_fallback"
    else:
        outcome = "ok"
    return {
        "outcome": outcome,
        "turns": turns,
        "provider_errors": provider_errors,
        "calls": calls,
        "fallback_logs": fallbacks,
        "stored_roles": [m.role.value for m in stored],
        "trace_llm_calls": [
            [call.purpose, call.success] for trace in traces for call in trace.llm_calls
        ],
        "title": conversation.title if conversation is not None else None,
        "memorised": memory.episodes,
    }


AGENT_CONTENTS = ["Hi! Are you open on Sunday evening?", "Great. Can I bring my dog?"]
# Five turns, as a new user would try: the summariser's trigger of three is reached twice.
CONVERSATION = [
    "Hi! Are you open on Sunday evening?",
    "Great. Can I bring my dog?",
    "Do you have vegetarian dishes?",
    "I'd like to book a table for four people on Sunday at 8pm.",
    "Thanks, see you on Sunday!",
]


def _letters(text: str) -> str:
    return "".join(char for char in text.lower() if char.isalnum())


def echoes(content: str, response: str) -> bool:
    """The reply merely repeats the user's message: its letters and digits are the
    message's, near enough, or a good part of them ("Thanks, see...")."""
    said, heard = _letters(content), _letters(response)
    if not heard:
        return False
    part_of_it = heard in said and len(heard) >= min(12, len(said))
    # near enough: a letter slipped in or left out ("Thanksx, see you on Sunday!")
    import difflib

    close = difflib.SequenceMatcher(None, said, heard).ratio() >= 0.9
    return part_of_it or close


class FlowRecall:
    """Stands in for the framework's ProceduralMemory (Qdrant and embeddings): recalls the
    given flows' metadata, as its ``recall`` returns it."""

    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        self.candidates = candidates

    async def recall(self, **_: Any) -> list[dict[str, Any]]:
        return list(self.candidates)


async def run_conversation(mode: str, shapes: bool) -> dict[str, Any]:
    """Five turns on ``.with_llm(LocalLLM(...))`` and nothing else; then the same with the
    framework's FlowSelector choosing between two flows (recalled by a stand-in memory)."""
    from jazzmine.core.flows import BaseFlow

    plain = await agent_turns(
        local_llm(mode, max_tokens=FREE_TEXT_TOKENS, framework_shapes=shapes), CONVERSATION
    )
    flows = restaurant_flows()[:2]  # the registry holds flows weakly: keep them referenced
    llm = local_llm(mode, max_tokens=FREE_TEXT_TOKENS, framework_shapes=shapes)
    selector = FlowSelector(
        llm=llm,
        flow_registry=BaseFlow.registry,
        proc_mem=FlowRecall(candidates_of(flows)),
        agent_id=AGENT,
    )
    with_flows = await agent_turns(llm, CONVERSATION, flow_selector=selector)
    return {"plain": plain, "flows": with_flows, "flow_ids": [flow.id for flow in flows]}


async def run_agent(mode: str, folder: Path) -> dict[str, Any]:
    minimal = await agent_turns(local_llm(mode, max_tokens=FREE_TEXT_TOKENS), AGENT_CONTENTS)
    shaped = await agent_turns(
        local_llm(mode, max_tokens=FREE_TEXT_TOKENS),
        AGENT_CONTENTS,
        enhancer_llm=local_llm(
            mode,
            max_tokens=JSON_TOKENS,
            response_format=json_schema("enhancement", ENHANCER_SCHEMA),
        ),
        summary_llm=local_llm(
            mode, max_tokens=JSON_TOKENS, response_format=json_schema("episode", SUMMARY_SCHEMA)
        ),
        folder=folder,
    )
    return {"minimal": minimal, "json_enhancer_and_summarizer": shaped}


def scenario_parts(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(run_parts(options.mode, Path(folder)))
    results["stand_ins_used"] = list(_stand_in.USED)
    return results


def scenario_agent(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(run_agent(options.mode, Path(folder)))
    results["stand_ins_used"] = list(_stand_in.USED)
    return results


def scenario_shapes(_: argparse.Namespace) -> dict[str, Any]:
    """Each part's constraint, as a call of the framework's own messages gets it (built,
    not run), and replies that meet it fed to the part's own parser."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
    from helpers.gbnf_recogniser import accepts
    from jazzmine.core.agent import parsers, prompts
    from jazzmine.core.agent.core import Agent
    from jazzmine.core.conversation_summarizer import (
        SUMMARIZER_SYSTEM_PROMPT,
        _clean_llm_json_payload,
    )
    from jazzmine.core.flows import selector as flow_selector
    from jazzmine.core.message_enhancer import ENHANCEMENT_SYSTEM_PROMPT

    from jazzmine.local.tools.validate import validate

    llm = LocalLLM(prompt_format="flat")
    flows = restaurant_flows()
    ids = [flow.id for flow in flows]
    part = framework.MessagePart
    turn = '<state status="idle" turn="1"/>\n\n<user_message>Can I bring my dog?</user_message>'

    def enhancer(reply: str) -> bool:
        from jazzmine.core.message_enhancer import MessageEnhancer

        return bool(MessageEnhancer._parse_llm_response(reply)["intent"])

    def summary(reply: str) -> bool:
        data = json.loads(_clean_llm_json_payload(reply))
        return bool(str(data.get("short_summary", "")).strip())

    def selection(reply: str) -> bool:
        chosen = json.loads(reply)
        return isinstance(chosen, list) and bool(chosen) and set(chosen) <= set(ids)

    def agent_answer(reply: str) -> bool:
        return parsers.parse_task_request(reply) is None and bool(parsers.extract_response(reply))

    cases = {
        "message_enhancer": (
            [part("system", ENHANCEMENT_SYSTEM_PROMPT), part("user", "<enhancement_request/>")],
            [
                '{"enhanced_query": "Can I bring my dog?", "sentiment_score": 0.0, "intent": '
                '"ask_pet_policy", "entities": [{"name": "dog", "attributes": ["pet"]}], '
                '"is_cancellation": false, "is_continuation": true}'
            ],
            enhancer,
        ),
        "conversation_summarizer": (
            [part("system", SUMMARIZER_SYSTEM_PROMPT), part("user", "<episode>\n</episode>")],
            ['{"short_summary": "A booking.", "long_summary": "The user booked a table."}'],
            summary,
        ),
        "flow_selector": (
            [
                part("system", flow_selector.SELECTOR_SYSTEM_PROMPT),
                part(
                    "user",
                    flow_selector._build_selector_user_content(
                        "Book a table", candidates_of(flows), []
                    ),
                ),
            ],
            [json.dumps(ids[:1]), json.dumps(ids[1:])],
            selection,
        ),
        "slot_extraction": (
            [
                part("system", prompts._SLOT_EXTRACTION_SYSTEM),
                part(
                    "user",
                    "Pending parameters:\n- party_size (int, required): guests\n"
                    "- day (str, optional): the day\n\nUser message: four on Friday",
                ),
            ],
            ['{"party_size": 4, "day": "Friday"}', "{}"],
            lambda reply: isinstance(json.loads(reply), dict),
        ),
        "conversation_title": (
            [part("system", prompts._TITLE_GENERATION_SYSTEM), part("user", "<user_message/>")],
            ["Bringing a dog to Sunday dinner"],
            lambda reply: Agent._normalize_generated_title(reply) == reply,
        ),
        "agent_loop": (
            [
                part(
                    "system",
                    prompts._SYSTEM_PROMPT_NO_TOOLS_TEMPLATE.format(
                        name="Basil", personality="A friendly host."
                    ),
                ),
                part("user", turn),
            ],
            ["<response>Yes, well-behaved dogs are welcome on the terrace.</response>"],
            agent_answer,
        ),
    }
    results: dict[str, Any] = {}
    for name, (messages, replies, parses) in cases.items():
        request = llm.build_request(messages)
        off = llm.build_request(messages, framework_shapes=False)
        other = llm.build_request([part("system", messages[0].content + " "), *messages[1:]])
        if request.json_schema is not None:
            schema = request.json_schema

            def meets(reply: str, schema: Any = schema) -> bool:
                return validate(json.loads(reply), schema) == []
        elif request.grammar is not None:
            grammar = request.grammar

            def meets(reply: str, grammar: str = grammar) -> bool:
                return accepts(grammar, reply)
        else:
            results[name] = {"constrained": False}
            continue
        results[name] = {
            "constrained": True,
            "meets": [meets(reply) for reply in replies],
            "parses": [parses(reply) for reply in replies],
            # What a small model writes unconstrained is refused by the constraint.
            "refuses_free_text": not meets('"Can I bring my dog?"'),
            "off_unconstrained": off.json_schema is None and off.grammar is None,
            "other_text_unconstrained": other.json_schema is None and other.grammar is None,
        }
    results["stand_ins_used"] = list(_stand_in.USED)
    return results


def scenario_conversation(options: argparse.Namespace) -> dict[str, Any]:
    results = asyncio.run(run_conversation(options.mode, options.shapes == "on"))
    results["stand_ins_used"] = list(_stand_in.USED)
    return results


SCENARIOS = {
    "shapes": scenario_shapes,
    "conversation": scenario_conversation,
    "identity": scenario_identity,
    "errors": scenario_errors,
    "parts": scenario_parts,
    "agent": scenario_agent,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--mode", choices=("percall", "warm"), default="percall")
    parser.add_argument("--shapes", choices=("on", "off"), default="on")
    parser.add_argument("--crash", help="a fake binary that prints a little, then crashes")
    parser.add_argument("--hang", help="a fake binary that prints a little, then hangs")
    options = parser.parse_args(argv)
    results = SCENARIOS[options.scenario](options)
    options.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
