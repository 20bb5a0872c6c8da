"""LocalLLM's options (the table in ``options/table.py``): each checked when it is given, at
construction and per call.

Nothing here runs a model: a wrong option must fail before any process starts, so the
binary is a path that does not exist (or, where a run is checked, a small script).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jazzmine.local import LLMInvalidRequestError, LocalLLM, MessagePart
from jazzmine.local.options.names import ALIASES, LLAMA_FLAGS
from jazzmine.local.options.table import OPTIONS, PER_CALL_OPTIONS, Options

NOWHERE = "/nonexistent/llama-completion"
HELLO = [MessagePart("user", "hello")]
METHODS = ("generate", "agenerate", "stream", "astream")


@pytest.fixture(autouse=True)
def _no_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JAZZMINE_KEEP_ALIVE", "JAZZMINE_RPC_SERVERS", "JAZZMINE_LLAMA_BIN"):
        monkeypatch.delenv(name, raising=False)


def build(**options: Any) -> LocalLLM:
    # prompt_format="flat": no probe of the (missing) binary, no GGUF read.
    return LocalLLM(**{"binary_path": NOWHERE, "model": "x", "prompt_format": "flat", **options})


def call(llm: LocalLLM, method: str, **options: Any) -> None:
    """Make the call as a caller would: an error counts only if it comes at once."""
    result = getattr(llm, method)(HELLO, **options)
    if method == "agenerate":
        # A coroutine raises when awaited: that is its call.
        asyncio.run(result)
    elif method == "astream":
        asyncio.run(result.aclose())  # it returned, so nothing was refused: tidy up


def raised(action: Callable[[], Any]) -> BaseException:
    with pytest.raises((TypeError, ValueError)) as caught:
        action()
    return caught.value


# ---------- unknown names ----------


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("model_path", "model"),
        ("context_size", "n_ctx"),
        ("n_context", "n_ctx"),
        ("ctx_size", "n_ctx"),
        ("num_ctx", "n_ctx"),
        ("n_threads", "threads"),
        ("num_thread", "threads"),
        ("max_token", "max_tokens"),
        ("max_new_tokens", "max_tokens"),
        ("num_predict", "max_tokens"),
        ("stop_sequences", "stop"),
        ("maxTokens", "max_tokens"),
        ("temprature", "temperature"),
        ("keepalive", "keep_alive"),
        ("rpc_server", "rpc_servers"),
    ],
)
def test_an_unknown_constructor_argument_names_the_option_meant(name: str, meant: str) -> None:
    error = raised(lambda: build(**{name: 1}))
    assert isinstance(error, TypeError) and isinstance(error, LLMInvalidRequestError)
    assert str(error) == (
        f"LocalLLM() got an unexpected keyword argument {name!r}; did you mean {meant!r}?"
    )


def test_the_briefs_example_no_longer_runs_the_default_model() -> None:
    with pytest.raises(TypeError, match="'model_path'; did you mean 'model'"):
        LocalLLM(model_path="/models/x.gguf", context_size=128, max_token=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "flag"), [("typical_p", "--typical"), ("repeat_last_n", "--repeat-last-n")]
)
def test_a_llama_flag_without_an_option_points_to_extra_args(name: str, flag: str) -> None:
    error = raised(lambda: build(**{name: 0.9}))
    assert isinstance(error, TypeError)
    assert f"extra_args=[{flag!r}, '0.9']" in str(error)


def test_a_name_like_no_option_lists_the_options() -> None:
    error = raised(lambda: build(zebra=1))
    assert isinstance(error, TypeError)
    assert "unexpected keyword argument 'zebra'; the options are:" in str(error)
    assert all(option in str(error) for option in OPTIONS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("max_new_tokens", "did you mean 'max_tokens'?"),
        ("temprature", "did you mean 'temperature'?"),
        ("seeds", "did you mean 'seed'?"),
        ("stop_sequences", "did you mean 'stop'?"),
        ("n_ctx", "n_ctx is set on LocalLLM(...), not per call"),
        ("num_ctx", "did you mean 'n_ctx'? It is set on LocalLLM(...), not per call"),
        ("repeat_last_n", "extra_args=['--repeat-last-n', '1']"),
    ],
)
def test_an_unknown_per_call_argument_names_the_option_meant(
    method: str, name: str, words: str
) -> None:
    error = raised(lambda: call(build(), method, **{name: 1}))
    assert isinstance(error, TypeError) and isinstance(error, LLMInvalidRequestError)
    assert str(error).startswith(f"{method}() got an unexpected keyword argument {name!r}; ")
    assert words in str(error)


# ---------- the table covers the signature ----------


def test_every_parameter_has_a_check_and_every_check_a_parameter() -> None:
    parameters = set(inspect.signature(LocalLLM).parameters) - {"kwargs"}
    assert parameters == set(OPTIONS) == {field.name for field in dataclasses.fields(Options)}
    assert set(ALIASES.values()) <= set(OPTIONS)
    assert not (set(ALIASES) | set(LLAMA_FLAGS)) & set(OPTIONS)
    assert set(PER_CALL_OPTIONS) == {
        "temperature",
        "max_tokens",
        "seed",
        "response_format",
        "grammar",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "framework_shapes",
    }


# ---------- values ----------

# (option, bad value, the error's type, words of its message)
BAD_VALUES: list[tuple[str, Any, type[Exception], str]] = [
    ("temperature", -0.1, ValueError, "finite number >= 0"),
    ("temperature", math.nan, ValueError, "finite number >= 0"),
    ("temperature", math.inf, ValueError, "finite number >= 0"),
    ("temperature", True, TypeError, "must be a number"),
    ("temperature", "0.5", TypeError, "must be a number"),
    ("timeout", 0, ValueError, "finite number > 0"),
    ("timeout", -5, ValueError, "finite number > 0"),
    ("timeout", math.inf, ValueError, "finite number > 0"),
    ("timeout", math.nan, ValueError, "finite number > 0"),
    ("timeout", True, TypeError, "must be a number"),
    ("seed", -2, ValueError, "from -1 to 4294967295"),
    ("seed", 2**32, ValueError, "from -1 to 4294967295"),
    ("seed", 1.0, TypeError, "must be an integer"),
    ("seed", False, TypeError, "must be an integer"),
    ("max_tokens", 0, ValueError, "from 1 to 2147483647"),
    ("max_tokens", 2**31, ValueError, "from 1 to 2147483647"),
    ("max_tokens", True, TypeError, "must be an integer"),
    ("max_tokens", "5", TypeError, "must be an integer"),
    ("n_ctx", -1, ValueError, "from 0 to"),
    ("n_ctx", 512.0, TypeError, "must be an integer"),
    ("threads", 0, ValueError, "from 1 to"),
    ("threads", True, TypeError, "must be an integer"),
    ("n_gpu_layers", -2, ValueError, "from -1 to"),
    ("n_gpu_layers", "all", TypeError, "must be an integer"),
    ("n_gpu_layers", "AUTO", TypeError, "must be an integer"),
    ("max_concurrency", 0, ValueError, "from 1 to"),
    ("max_concurrency", None, TypeError, "must be an integer"),
    ("max_concurrency", True, TypeError, "must be an integer"),
    ("extra_args", "-n 5", TypeError, "write ['-n', '5'] for '-n 5'"),
    ("extra_args", ["-n", 5], TypeError, "each of extra_args must be a str or os.PathLike"),
    ("extra_args", None, TypeError, "must be a list of arguments"),
    ("extra_args", ["-hf", "org/model"], ValueError, "network"),
    ("stop", 123, TypeError, "stop must be a list of strings"),
    ("stop", ["ok", 7], TypeError, "each of stop must be a string"),
    ("stop", [""], ValueError, "non-empty"),
    ("tensor_split", "1,1", TypeError, "list of numbers such as [1, 1]"),
    ("tensor_split", [1, -1], ValueError, "tensor_split[1] must be a finite number >= 0"),
    ("tensor_split", [1, math.nan], ValueError, "tensor_split[1] must be a finite number"),
    ("tensor_split", [True], TypeError, "tensor_split[0] must be a number"),
    ("env", {"PATH": 1}, TypeError, "env['PATH'] must be a string"),
    ("env", {1: "a"}, TypeError, "each name in env must be a string"),
    ("env", "A=1", TypeError, "mapping of str to str"),
    ("env", {"A=B": "x"}, ValueError, "variable name 'A=B'"),
    ("env", {"A": "x\x00"}, ValueError, "NUL"),
    ("rpc_servers", 123, TypeError, "list of 'host:port' strings"),
    ("rpc_servers", [50052], TypeError, "each of rpc_servers"),
    ("rpc_servers", b"host:1", TypeError, "list of 'host:port' strings"),
    ("rpc_servers", ["host"], ValueError, "expected host:port"),
    ("keep_alive", True, TypeError, "seconds or a duration"),
    ("keep_alive", [5], TypeError, "seconds or a duration"),
    ("keep_alive", "soon", ValueError, "duration like '30s'"),
    ("keep_alive", math.inf, ValueError, "finite"),
    ("keep_alive", math.nan, ValueError, "finite"),
    ("keep_alive", -math.inf, ValueError, "finite"),
    ("keep_alive", 1e12, ValueError, "at most"),
    ("keep_alive", "9999999999h", ValueError, "at most"),
    ("prompt_format", 1, TypeError, "one of"),
    ("prompt_format", "chatml", ValueError, "one of"),
    ("binary_path", 5, TypeError, "str or os.PathLike"),
    ("binary_path", "", ValueError, "empty"),
    ("model", b"x.gguf", TypeError, "str or os.PathLike"),
    ("model", " ", ValueError, "empty"),
    ("server_path", "a\x00b", ValueError, "NUL"),
    ("chat_template", 5, TypeError, "str or os.PathLike"),
    ("prompt_flag", "", ValueError, "empty"),
    ("argv_template", "-p {prompt}", TypeError, "list of arguments"),
    ("argv_template", ["-p", "{promt}"], ValueError, "placeholder 'promt'"),
    ("argv_template", ["-p", "{prompt"], ValueError, "malformed"),
    ("argv_template", ["-n", "{max_tokens}"], ValueError, "never passes the prompt"),
    ("grammar", 5, TypeError, "must be a string"),
    ("grammar", "", ValueError, "empty"),
    ("response_format", "json", TypeError, "response_format must be a dict"),
    ("response_format", {"type": "xml"}, ValueError, "json_object"),
    ("framework_shapes", "yes", TypeError, "True or False"),
    ("framework_shapes", None, TypeError, "True or False"),
]


def _id(case: tuple[str, Any, type[Exception], str]) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize("keep_alive", [None, "5m"])
@pytest.mark.parametrize("case", BAD_VALUES, ids=[_id(case) for case in BAD_VALUES])
def test_a_bad_value_fails_at_construction_the_same_way_in_both_modes(
    case: tuple[str, Any, type[Exception], str], keep_alive: str | None
) -> None:
    name, value, kind, words = case
    options = {name: value}
    if name != "keep_alive":
        # Warm mode would start llama-server (here: fail to find it) only after the checks.
        options["keep_alive"] = keep_alive
    error = raised(lambda: build(**options))
    assert isinstance(error, kind) and isinstance(error, LLMInvalidRequestError)
    opposite = ValueError if kind is TypeError else TypeError
    assert not isinstance(error, opposite), "a wrong type and a wrong value are told apart"
    assert words in str(error) and name in str(error)


PER_CALL_BAD = [case for case in BAD_VALUES if case[0] in (*PER_CALL_OPTIONS, "stop")]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", PER_CALL_BAD, ids=[_id(case) for case in PER_CALL_BAD])
def test_a_bad_value_per_call_fails_as_at_construction(
    case: tuple[str, Any, type[Exception], str], method: str
) -> None:
    name, value, kind, _ = case
    at_construction = raised(lambda: build(**{name: value}))
    per_call = raised(lambda: call(build(), method, **{name: value}))
    assert type(per_call) is type(at_construction) and isinstance(per_call, kind)
    assert str(per_call) == str(at_construction)


def test_both_constraints_or_both_prompt_options_are_refused() -> None:
    error = raised(lambda: build(response_format={"type": "json_object"}, grammar="root ::= x"))
    assert isinstance(error, ValueError) and "not both" in str(error)
    error = raised(lambda: build(prompt_flag="--input", argv_template=["{prompt}"]))
    assert isinstance(error, ValueError) and "not both" in str(error)


@pytest.mark.parametrize(
    ("variable", "value", "kind"),
    [
        ("JAZZMINE_KEEP_ALIVE", "soon", ValueError),
        ("JAZZMINE_KEEP_ALIVE", "inf", ValueError),
        ("JAZZMINE_RPC_SERVERS", "no-port", ValueError),
    ],
)
def test_defaults_from_the_environment_are_checked_and_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, kind: type[Exception]
) -> None:
    monkeypatch.setenv(variable, value)
    error = raised(build)
    assert isinstance(error, kind) and str(error).startswith(variable)


# ---------- good values ----------


@pytest.mark.parametrize(
    ("name", "value", "kept"),
    [
        ("seed", -1, -1),
        ("seed", 2**32 - 1, 2**32 - 1),
        ("temperature", 0, 0.0),
        ("temperature", 1, 1.0),
        ("max_tokens", 2**31 - 1, 2**31 - 1),
        ("n_ctx", 0, 0),
        ("n_gpu_layers", -1, -1),
        ("stop", "END", ("END",)),
        ("stop", ["a", "b"], ("a", "b")),
        ("extra_args", ("--lora", Path("/x/a.gguf")), ("--lora", "/x/a.gguf")),
        ("tensor_split", [3, 1], (3.0, 1.0)),
        ("tensor_split", [], None),
        ("env", {"A": "1"}, {"A": "1"}),
        ("rpc_servers", "10.0.0.2:50052, [::1]:7", ("10.0.0.2:50052", "[::1]:7")),
        ("keep_alive", "-1", "-1"),
        (
            "argv_template",
            ["--file", "{prompt_file}", "{{x}}"],
            ("--file", "{prompt_file}", "{{x}}"),
        ),
    ],
)
def test_good_values_are_kept_in_their_normal_form(name: str, value: Any, kept: Any) -> None:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(LocalLLM).parameters.items()
        if name != "kwargs"
    }
    assert getattr(Options.checked({**defaults, name: value}), name) == kept


def test_the_frameworks_builder_arguments_are_accepted() -> None:
    # jazzmine 0.1.42's builder (core/builder/llm_utils.py) builds a local provider from a
    # LocalLLMConfig with exactly these names, and the config's defaults.
    llm = LocalLLM(binary_path=NOWHERE, model="local", temperature=0.5, max_tokens=1024)
    assert (llm.model, llm.temperature, llm.max_tokens) == ("local", 0.5, 1024)
    assert LocalLLM(binary_path=NOWHERE, model="local", timeout=90.0).timeout == 90.0


def test_per_call_values_reach_the_binary_normalised(make_script: Callable[..., str]) -> None:
    script = make_script(
        "argv-echo",
        """
        import json, sys
        print(json.dumps(sys.argv[2:]))
        """,
    )
    llm = LocalLLM(
        binary_path=script,
        model="x",
        prompt_format="flat",
        argv_template=["{prompt}", "{max_tokens}", "{temperature}", "{seed}"],
        max_tokens=9,
        temperature=0.5,
        seed=3,
    )
    assert json.loads(llm.generate(HELLO).text) == ["9", "0.5", "3"]
    reply = llm.generate(HELLO, max_tokens=4, temperature=1, seed=-1)
    assert json.loads(reply.text) == ["4", "1.0", "-1"]
    pieces: Iterator[str] = llm.stream(HELLO, max_tokens=None, temperature=None)
    assert json.loads("".join(pieces)) == ["", "", "3"]
