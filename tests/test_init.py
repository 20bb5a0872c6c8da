"""The package's public API: the names importable from ``jazzmine.local``, as published."""

from __future__ import annotations

import importlib
import json
import sys

from helpers.probes import run_python

import jazzmine.local
from jazzmine.local import BaseLLM, LLMResponse, LLMUsage, LocalLLM, MessagePart, estimate_tokens


def test_public_names_match_the_published_api() -> None:
    assert issubclass(LocalLLM, BaseLLM)
    response = LLMResponse(text="x", usage=LLMUsage(1, 2, 3), model="m")
    assert (response.latency_ms, response.finish_reason, response.raw, response.api_metrics) == (
        None,
        None,
        None,
        None,
    )
    assert MessagePart(role="user", content="hi").content == "hi"
    assert estimate_tokens("") == 0 and estimate_tokens("abcdefgh") == 2


# The public API as the README documents it, sorted: adding or dropping a name is a
# deliberate change to this list, never a side effect of moving modules around.
DOCUMENTED = [
    "AsyncResponseStream",
    "BaseLLM",
    "GenerationRequest",
    "LLMConnectionError",
    "LLMContextLengthError",
    "LLMError",
    "LLMIncompleteOutputError",
    "LLMInternalError",
    "LLMInvalidRequestError",
    "LLMRateLimitError",
    "LLMResponse",
    "LLMTimeoutError",
    "LLMToolCallError",
    "LLMUnsupportedPlatformError",
    "LLMUsage",
    "LocalLLM",
    "MessagePart",
    "MockReply",
    "MockTransport",
    "ResponseStream",
    "RunOutcome",
    "Session",
    "ToolCall",
    "Transport",
    "estimate_tokens",
    "loaded_models",
    "set_model_budget",
]


def test_all_is_exactly_the_documented_names_and_each_resolves() -> None:
    assert len(DOCUMENTED) == 27 and sorted(DOCUMENTED) == DOCUMENTED
    assert jazzmine.local.__all__ == DOCUMENTED
    for name in DOCUMENTED:
        value = getattr(jazzmine.local, name)
        assert value is not None, name
        # Each name is the object its defining module exports, under the same name.
        assert getattr(sys.modules[value.__module__], name) is value, name


def test_the_lazy_entry_points_name_modules_that_define_them() -> None:
    lazy: dict[str, str] = jazzmine.local._LAZY
    assert set(lazy) <= set(DOCUMENTED)
    for name, module in lazy.items():
        defined = importlib.import_module(f"jazzmine.local.{module}")
        assert getattr(defined, name) is getattr(jazzmine.local, name), name


# Run in a fresh interpreter: this test process has long since imported everything.
_IMPORT_PROBE = """
import json, sys
from jazzmine.local import LocalLLM
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_local_llm_leaves_the_heavy_dependencies_unloaded() -> None:
    done = run_python(_IMPORT_PROBE, limit=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    loaded = set(json.loads(out))
    assert "jazzmine.local.llm" in loaded  # the probe did import LocalLLM
    heavy = {"httpx", "jinja2", "asyncio", "huggingface_hub"}
    assert {m.split(".")[0] for m in loaded} & heavy == set()
