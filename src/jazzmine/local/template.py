"""Chat templates: a model's Jinja chat template rendered the way llama.cpp renders it.

The prompt jazzmine builds must be byte-identical to what llama-server's
``/apply-template`` returns for the pinned llama.cpp, so that a model sees the same
text whichever way it is run. llama.cpp renders with its own Jinja engine and, before
that, rewrites the messages (``common_chat_templates_apply_jinja`` in
``common/chat.cpp``); both halves are reproduced here on top of jinja2's immutable
sandbox, with the globals Hugging Face's ``apply_chat_template`` provides.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.filters
import jinja2.parser
import jinja2.runtime
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import LLMInvalidRequestError
from .gguf import TokenizerInfo, read_tokenizer_info
from .gguf import clear_cache as _clear_gguf_cache
from .types import MessagePart

__all__ = [
    "CHATML_TEMPLATE",
    "ChatTemplate",
    "clear_cache",
    "end_of_turn_markers",
    "load_template",
    "render",
    "template_from_gguf",
    "template_with_tokens",
]

# llama.cpp's fallback when a model has no template (CHATML_TEMPLATE_SRC in chat.cpp).
CHATML_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A template and the special tokens it is rendered with.

    ``add_bos``/``add_eos`` mirror the model's tokenizer settings: when the tokenizer
    adds BOS itself, llama.cpp strips a BOS the template wrote so it is not doubled.
    """

    source: str
    bos_token: str
    eos_token: str
    add_bos: bool = True
    add_eos: bool = False


def template_from_gguf(path: str | os.PathLike[str]) -> ChatTemplate | None:
    """The template stored in a GGUF file, or None when it has none.

    Reads only the header (cached per path, mtime and size), never the weights, and
    decodes only the BOS and EOS strings of the vocabulary.
    """
    info = read_tokenizer_info(path)
    if info.chat_template is None:
        return None
    return template_with_tokens(_named_source(info.chat_template), info)


def template_with_tokens(source: str, info: TokenizerInfo) -> ChatTemplate:
    """``source`` with the model's BOS/EOS strings and whether its tokenizer adds them."""
    return ChatTemplate(source, info.bos_token, info.eos_token, info.add_bos, info.add_eos)


def _named_source(source: str) -> str:
    """llama.cpp reads an empty template, or the name "chatml", as its ChatML template."""
    return CHATML_TEMPLATE if source in ("", "chatml") else source


def load_template(value: str, bos_token: str = "", eos_token: str = "") -> str:
    """The template source for a ``chat_template=`` value: a file path or Jinja text.

    It is a path when a file of that name exists. ``"chatml"`` means llama.cpp's ChatML
    template. The template is checked the way llama.cpp checks a template given on its
    command line (``common_chat_verify_template``: render one user message "test"), so a
    broken one fails here rather than on the first request.
    """
    if os.path.isfile(value):
        try:
            with open(value, "rb") as file:
                # bytes, then decode: llama.cpp reads the file verbatim, \r\n included
                source = file.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LLMInvalidRequestError(f"cannot read chat template {value!r}: {exc}") from exc
    elif "{" not in value and (value.endswith((".jinja", ".j2")) or os.sep in value):
        raise LLMInvalidRequestError(f"chat template file not found: {value!r}")
    else:
        source = value
    source = _named_source(source)
    render(
        ChatTemplate(source, bos_token, eos_token),
        [MessagePart(role="user", content="test")],
    )
    return source


def render(
    template: ChatTemplate,
    messages: Sequence[MessagePart],
    *,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text llama-server's ``/apply-template`` produces for ``messages``.

    Raises LLMInvalidRequestError when the template does not parse, raises (its message
    is the error's), or attempts something the sandbox forbids.
    """
    compiled = _compile(template.source)
    caps = _capabilities(template)
    now = time.time()
    msgs: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in messages]
    if _STEPFUN_MARKER in template.source:
        # workaround::trim_all_content: leftover whitespace sends StepFun into loops
        for msg in msgs:
            msg["content"] = _trim_ascii(msg["content"])

    # A trailing assistant message is a prefill: llama-server renders the rest and lets
    # the model continue that message (oaicompat_chat_params_parse, prefill_assistant).
    prefill: str | None = None
    if msgs and msgs[-1]["role"] == "assistant":
        if len(msgs) >= 2 and msgs[-2]["role"] == "assistant":
            raise LLMInvalidRequestError(
                "Cannot have 2 or more assistant messages at the end of the list."
            )
        prefill = str(msgs.pop()["content"])
        add_generation_prompt = False

    if not caps.system_role:
        _merge_system_message(msgs)
    if caps.only_typed_content:
        # messages_inp_normalizer: the template reads content as a list of parts
        for msg in msgs:
            msg["content"] = [{"type": "text", "text": msg["content"]}]

    def apply(generation_prompt: bool) -> str:
        return _apply(compiled, template, msgs, generation_prompt, caps.thinking, now)

    prompt = apply(add_generation_prompt)
    if prefill:
        # peg_generator::generate_parser: the generation prompt (what rendering with it
        # adds past the common prefix), an empty reasoning block, then the text so far.
        with_prompt = apply(True)
        generation = with_prompt[_common_prefix(prompt, with_prompt) :]
        if caps.reasoning_start:
            cut = generation.find(caps.reasoning_start)
            if cut >= 0:
                generation = generation[:cut]
            generation += caps.reasoning_start + caps.reasoning_end
        prompt += generation + prefill
    return prompt


# Strings that close an assistant turn in the template families llama.cpp ships.
_TURN_END_MARKERS = (
    "<end_of_turn>",  # Gemma 1-3
    "<turn|>",  # Gemma 4
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3 tool calls
    "<|im_end|>",  # ChatML, Qwen
    "<|end|>",  # Phi 3, GPT-OSS
    "<|return|>",  # GPT-OSS
    "<|end_of_text|>",  # Granite
    "<|endoftext|>",
    "<|END_OF_TURN_TOKEN|>",  # Command R
    "<｜end▁of▁sentence｜>",  # DeepSeek
    "<|eot|>",
    "<end_of_utterance>",
    "</s>",  # Llama 2, Mistral
)


def end_of_turn_markers(template: ChatTemplate) -> tuple[str, ...]:
    """Strings after which the model has finished its turn, so generation stops there.

    The known markers that the template writes, plus the EOS token.
    """
    markers = [m for m in _TURN_END_MARKERS if m in template.source]
    if template.eos_token and template.eos_token not in markers:
        markers.append(template.eos_token)
    return tuple(markers)


def clear_cache() -> None:
    """Forget cached GGUF headers, compiled templates and template capabilities."""
    _clear_gguf_cache()
    with _lock:
        _compiled.clear()
        _caps.clear()


# --- rendering ------------------------------------------------------------------------

_STEPFUN_MARKER = "You have access to the following functions in JSONSchema format"


def _trim_ascii(text: str) -> str:
    # C isspace in the "C" locale, as llama.cpp's trim_whitespace uses
    return text.strip(" \t\n\v\f\r")


def _merge_system_message(msgs: list[dict[str, Any]]) -> None:
    # workaround::system_message_not_supported: fold the system prompt into the next
    # message, or drop it when it is alone.
    if msgs and msgs[0]["role"] == "system":
        first = msgs.pop(0)
        if msgs:
            msgs[0] = {**msgs[0], "content": f"{first['content']}\n{msgs[0]['content']}"}


def _apply(
    compiled: jinja2.Template,
    template: ChatTemplate,
    msgs: list[dict[str, Any]],
    add_generation_prompt: bool,
    enable_thinking: bool,
    now: float,
) -> str:
    """common_chat_template_direct_apply_impl: one rendering plus the BOS/EOS strip."""
    local = time.localtime(now)
    context: dict[str, Any] = {
        "messages": msgs,
        "bos_token": template.bos_token,
        "eos_token": template.eos_token,
        "enable_thinking": enable_thinking,
        # llama-server's default --reasoning-preserve (caps_apply_preserve_reasoning)
        "preserve_reasoning": True,
        "preserve_thinking": True,
        "clear_thinking": False,
        "truncate_history_thinking": False,
        "drop_thinking": False,
        # common_chat_extra_context: Llama 3.x templates print the date from these
        "datetime": time.strftime("%b %d %Y", local),
        "date_string": time.strftime("%d %b %Y", local),
        "strftime_now": lambda fmt: _strftime_now(fmt, local),
    }
    # llama.cpp only sets the flag when true, so a template sees it undefined otherwise.
    if add_generation_prompt:
        context["add_generation_prompt"] = True
    text = _run(compiled, context)
    if template.add_bos and text.startswith(template.bos_token):
        text = text[len(template.bos_token) :]
    if template.add_eos and template.eos_token and text.endswith(template.eos_token):
        text = text[: -len(template.eos_token)]
    return text


def _run(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    try:
        return compiled.render(context)
    except _RaisedByTemplate as exc:
        raise LLMInvalidRequestError(exc.text) from exc
    except SecurityError as exc:
        raise LLMInvalidRequestError(f"chat template tried an unsafe operation: {exc}") from exc
    except TemplateError as exc:
        raise LLMInvalidRequestError(f"chat template failed: {exc}") from exc
    except Exception as exc:  # a template can trip any Python error (e.g. None + str)
        raise LLMInvalidRequestError(f"chat template failed: {type(exc).__name__}: {exc}") from exc


def _strftime_now(fmt: str, local: time.struct_time) -> str:
    if not isinstance(fmt, str):
        raise _RaisedByTemplate("strftime_now: format must be a string")
    return time.strftime(fmt, local)


class _RaisedByTemplate(TemplateError):
    """raise_exception() called by the template itself."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _raise_exception(message: object) -> None:
    raise _RaisedByTemplate(str(message))


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Hugging Face's tojson: plain json.dumps, no HTML escaping (jinja2's own escapes <>&')
    _mark_used_deep(value)
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


class _Undefined(jinja2.ChainableUndefined):
    """Undefined values as llama.cpp's engine treats them, but never a withheld one.

    llama.cpp lets a template read through a missing value (``messages[0].role`` on an
    empty list is undefined, not an error) and concatenate it as "". For a forbidden
    attribute the sandbox also returns an Undefined, which plain jinja2 prints as "" -
    ``{{ x.__class__ }}`` would render quietly; failing instead makes an escape attempt an
    error the caller sees.
    """

    __slots__ = ()

    def __add__(self, other: object) -> Any:
        self._refuse_unsafe()
        if isinstance(other, str):
            return other
        return super().__add__(other)

    def __radd__(self, other: object) -> Any:
        self._refuse_unsafe()
        if isinstance(other, str):
            return other
        return super().__radd__(other)

    def _refuse_unsafe(self) -> None:
        if self._undefined_exception is SecurityError:
            self._fail_with_undefined_error()

    def __str__(self) -> str:
        self._refuse_unsafe()
        return super().__str__()

    def __iter__(self) -> Any:
        self._refuse_unsafe()
        return super().__iter__()

    def __bool__(self) -> bool:
        self._refuse_unsafe()
        return super().__bool__()

    def __len__(self) -> int:
        self._refuse_unsafe()
        return super().__len__()


class _Environment(ImmutableSandboxedEnvironment):
    # llama.cpp concatenates None with a string as if it were "" (its
    # workaround_concat_null_with_str); Python would raise TypeError.
    intercepted_binops = frozenset({"+"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "+":
            if left is None and isinstance(right, str):
                return right
            if right is None and isinstance(left, str):
                return left
        return super().call_binop(context, operator, left, right)

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # str methods go through the byte-wise versions llama.cpp uses (see below)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            replacement = _STRING_FUNCTIONS.get(getattr(__obj, "__name__", ""))
            if replacement is not None:
                # jinja2 threads its scope bookkeeping through calls; not ours to keep
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return replacement(owner, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


# llama.cpp's engine works on UTF-8 bytes with the C library's ctype: case changes and
# whitespace stripping touch ASCII only, and a string's length is its byte count. Python
# would uppercase "é" and strip "\u3000", so these stand in for the str methods and
# filters of the same names.
_ASCII_SPACE = " \t\n\v\f\r"
_TO_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_upper(text: str) -> str:
    return str(text).translate(_TO_UPPER)


def _ascii_lower(text: str) -> str:
    return str(text).translate(_TO_LOWER)


def _ascii_capitalize(text: str) -> str:
    text = str(text)
    return _ascii_upper(text[:1]) + _ascii_lower(text[1:])


def _ascii_title(text: str) -> str:
    out: list[str] = []
    start_word = True
    for char in str(text):
        if char in _ASCII_SPACE:
            start_word = True
            out.append(char)
        elif start_word:
            out.append(_ascii_upper(char))
            start_word = False
        else:
            out.append(_ascii_lower(char))
    return "".join(out)


def _ascii_strip(text: str, chars: str | None = None) -> str:
    return str(text).strip(_ASCII_SPACE if chars is None else chars)


def _ascii_lstrip(text: str, chars: str | None = None) -> str:
    return str(text).lstrip(_ASCII_SPACE if chars is None else chars)


def _ascii_rstrip(text: str, chars: str | None = None) -> str:
    return str(text).rstrip(_ASCII_SPACE if chars is None else chars)


_STRING_FUNCTIONS: dict[str, Callable[..., str]] = {
    "upper": _ascii_upper,
    "lower": _ascii_lower,
    "capitalize": _ascii_capitalize,
    "title": _ascii_title,
    "strip": _ascii_strip,
    "lstrip": _ascii_lstrip,
    "rstrip": _ascii_rstrip,
}


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="surrogatepass"))
    return len(value)


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged.

    Hugging Face templates use it to mark assistant text for training masks; llama.cpp
    accepts and ignores it.
    """

    tags = {"generation"}  # noqa: RUF012 - jinja2 declares this as a class attribute

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        # like llama.cpp's lexer: \r\n and \r read as \n, one final newline dropped
        keep_trailing_newline=False,
        extensions=[loopcontrols, _GenerationTag],
        undefined=_Undefined,
        autoescape=False,
    )
    env.filters["tojson"] = _tojson
    for name, function in _STRING_FUNCTIONS.items():
        env.filters[name] = function
    env.filters["trim"] = _STRING_FUNCTIONS["strip"]
    env.filters["length"] = env.filters["count"] = _length
    env.filters["selectattr"] = _selectattr
    env.tests["string"] = _is_string
    env.globals["raise_exception"] = _raise_exception
    # replaced per rendering by one bound to that rendering's clock
    env.globals["strftime_now"] = lambda fmt: _strftime_now(fmt, time.localtime())
    return env


_lock = threading.Lock()
_environment: ImmutableSandboxedEnvironment | None = None
_compiled: dict[str, jinja2.Template] = {}
_caps: dict[tuple[str, str, str], _Caps] = {}
_CACHE_LIMIT = 32


def _compile(source: str) -> jinja2.Template:
    global _environment
    with _lock:
        cached = _compiled.get(source)
        if cached is not None:
            return cached
        if _environment is None:
            _environment = _make_environment()
        env = _environment
    try:
        compiled = env.from_string(_patch_source(source))
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise LLMInvalidRequestError(
            f"chat template could not be parsed: {exc.message}{where}"
        ) from exc
    except SecurityError as exc:
        raise LLMInvalidRequestError(f"chat template tried an unsafe operation: {exc}") from exc
    except TemplateError as exc:
        raise LLMInvalidRequestError(f"chat template could not be parsed: {exc}") from exc
    with _lock:
        if len(_compiled) >= _CACHE_LIMIT:
            _compiled.clear()
        _compiled[source] = compiled
    return compiled


def _patch_source(source: str) -> str:
    """The edits common_chat_templates_init makes to known templates before parsing."""
    source = _named_source(source)
    # GPT-OSS refuses its own analysis channel in history
    if "<|channel|>" in source and "in message.content or" in source:
        source = source.replace(
            '{%- if "<|channel|>analysis<|message|>" in message.content or '
            '"<|channel|>final<|message|>" in message.content %}',
            "{%- if false %}",
        )
    # Mistral templates refuse assistant messages with empty content
    if "[TOOL_CALLS]" in source and "if (message['content'] is none or" in source:
        source = source.replace(
            "{%- if (message['content'] is none or message['content'] == '' or "
            "message['content']|length == 0) and (message['tool_calls'] is not defined or "
            "message['tool_calls'] is none or message['tool_calls']|length == 0) %}",
            "{%- if false %}",
        )
    return source


# --- capability detection (jinja::caps_get in common/jinja/caps.cpp) ------------------
#
# llama.cpp decides how to rewrite messages by running the template on probe inputs and
# watching what it touches. The probes below record the same events in jinja2: reading
# a message's content, indexing or iterating it, testing it with ``is string``, passing
# it to ``selectattr``.


@dataclass(frozen=True)
class _Caps:
    system_role: bool
    only_typed_content: bool
    thinking: bool
    # the reasoning delimiters llama.cpp's autoparser infers ("" when none)
    reasoning_start: str
    reasoning_end: str


class _Probe:
    def __init__(self) -> None:
        self.used = False
        self.ops: set[str] = set()


class _ProbeMessage(dict[str, Any]):
    """A message that notes when its content is read."""

    def __init__(self, data: dict[str, Any], probe: _Probe) -> None:
        super().__init__(data)
        self.probe = probe

    def __getitem__(self, key: str) -> Any:
        if key == "content":
            self.probe.used = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key == "content":
            self.probe.used = True
        return super().get(key, default)


class _ProbeStr(str):
    """String content that notes being indexed or iterated like a list of parts."""

    probe: _Probe

    def __getitem__(self, key: Any) -> str:
        if isinstance(key, int):
            self.probe.ops.add("array_access")
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        # llama.cpp's engine cannot loop over a string: the template fails there.
        self.probe.ops.add("array_access")
        raise TypeError("cannot iterate over string content")


class _ProbeList(list[Any]):
    """Typed (list) content that notes being indexed or iterated."""

    probe: _Probe

    def __getitem__(self, key: Any) -> Any:
        self.probe.ops.add("array_access")
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        self.probe.ops.add("array_access")
        return super().__iter__()


def _note(value: Any, op: str) -> None:
    probe = getattr(value, "probe", None) if isinstance(value, (_ProbeStr, _ProbeList)) else None
    if probe is not None:
        probe.ops.add(op)


def _is_string(value: Any) -> bool:
    _note(value, "test_is_string")
    return isinstance(value, str)


@jinja2.pass_context
def _selectattr(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    _note(value, "selectattr")
    return jinja2.filters.sync_do_selectattr(context, value, *args, **kwargs)


def _mark_used_deep(value: Any) -> None:
    # llama.cpp's tojson marks everything it serialises as used
    if isinstance(value, _ProbeMessage):
        value.probe.used = True
    if isinstance(value, dict):
        for item in value.values():
            _mark_used_deep(item)
    elif isinstance(value, list):
        for item in value:
            _mark_used_deep(item)


_STRING_MARKER = "STRING_MARKER"


def _probe_run(compiled: jinja2.Template, messages: list[Any], **extra: Any) -> str | None:
    """Render for a probe; None when the template fails (failures are findings here)."""
    context: dict[str, Any] = {
        "messages": messages,
        "tools": [],
        "bos_token": "",
        "eos_token": "",
        "add_generation_prompt": True,
        **extra,
    }
    try:
        return compiled.render(context)
    except Exception:
        return None


def _capabilities(template: ChatTemplate) -> _Caps:
    key = (template.source, template.bos_token, template.eos_token)
    with _lock:
        cached = _caps.get(key)
    if cached is not None:
        return cached
    source = template.source
    compiled = _compile(source)

    # typed content: is content read as a list of parts rather than as a string?
    supports_string, supports_typed = True, False
    probe = _Probe()
    content = _ProbeStr(_STRING_MARKER)
    content.probe = probe
    output = _probe_run(compiled, [{"role": "user", "content": content}])
    used_as_array = bool(probe.ops & {"selectattr", "array_access"})
    supports_typed = used_as_array
    if output is None or (used_as_array and _STRING_MARKER not in output):
        supports_string = False
    if "test_is_string" in probe.ops:
        probe = _Probe()
        parts = _ProbeList()
        parts.probe = probe
        output = _probe_run(compiled, [{"role": "user", "content": parts}])
        if probe.ops & {"selectattr", "array_access"} and output is not None:
            supports_typed = True

    # system role: does the template read the system message's content at all?
    probe = _Probe()
    _probe_run(
        compiled,
        [
            _ProbeMessage({"role": "system", "content": "System message"}, probe),
            {"role": "user", "content": "User message"},
        ],
    )
    system_role = probe.used

    reasoning = _Reasoning(compiled, template)
    caps = _Caps(
        system_role=system_role,
        only_typed_content=supports_typed and not supports_string,
        thinking=reasoning.supported,
        reasoning_start=reasoning.start,
        reasoning_end=reasoning.end,
    )
    with _lock:
        if len(_caps) >= _CACHE_LIMIT:
            _caps.clear()
        _caps[key] = caps
    return caps


# --- reasoning detection (autoparser::analyze_reasoning, chat-diff-analyzer.cpp) -------
#
# llama-server passes ``enable_thinking=true`` only to templates it believes reason, and
# a prefilled reply gets an empty reasoning block first. Which templates reason is
# decided by rendering probe conversations and diffing the outputs around "markers"
# (``<...>`` and ``[...]`` spans); the parts of that analysis that concern plain text
# are ported here, with the same probe strings.

_USER_MSG = "U_USER_MSG Hello END_U"
_ASSISTANT_MSG = "A_ASST_MSG I can help END_A"
_THINKING_CONTENT = "REASON_PART I am thinking END_R"
_SPACE = "[ \\t\\n\\v\\f\\r]*"
_MARKER = r"(?:<[^>]*>|\[[^\]]*\])"
_WRAPPED = re.compile(
    f"({_MARKER}{_SPACE}){re.escape(_THINKING_CONTENT)}({_SPACE}{_MARKER}{_SPACE})"
)
_DELIMITED = re.compile(f"{re.escape(_THINKING_CONTENT)}{_SPACE}({_MARKER}{_SPACE})?")


def _specialized_thinking(src: str) -> bool | None:
    """common_chat_try_specialized_template: families with their own handler decide."""

    def has(*needles: str) -> bool:
        return all(n in src for n in needles)

    if has("[SYSTEM_PROMPT]", "[TOOL_CALLS]", "[ARGS]") and "[CALL_ID]" not in src:
        return True  # Ministral 3
    if has("<|channel|>"):
        return True  # GPT-OSS
    if has("<atem:function_calls>", "<|eom|>"):
        return True  # Muse Glimmer
    if has(">>>all", ">>>${recipient}"):
        return False  # Functionary v3.2
    if has("<|tool_calls_section_begin|>", "<|tool_call_begin|>"):
        return True  # Kimi K2
    if has("<|open|>", "<|close|>", "<|end_of_msg|>"):
        return True  # Kimi K3
    if has("<role>ASSISTANT</role>", "<arg_key>"):
        return True  # Ling 3
    if has("<|START_TEXT|>", "<|START_ACTION|>"):
        return True  # Cohere2 MoE
    if has("<|tool_list_start|>", "<|tool_list_end|>"):
        return True  # LFM2
    if has("List of tools: [") and "<|tool_list_start|>" not in src:
        return True  # LFM2.5
    if has("<|role_sep|>", "<|message_sep|>") and "<|function_call|>" not in src:
        return False  # GigaChat 3
    if has("]<]minimax[>[", "<tool_call>", "<invoke name="):
        return True  # MiniMax M3
    if has("dsml_token", "DSML") and ("function_calls" in src or "tool_calls" in src):
        return True  # DeepSeek V3.2 / V4
    if has("'<|tool_call>call:'"):
        return True  # Gemma 4
    if has("Tool usage guidelines:", '<function name="', '<param name="'):
        return True  # MiniCPM 5
    if (
        has("<tool_call>", "<function=", "<parameter=")
        and "'<tool_call><function=' ~ tool_call.name ~ '>'" not in src
    ):
        return "<think>" in src  # Qwen3-Coder family
    return None


def _segments(text: str) -> list[tuple[bool, str]]:
    """segmentize_markers: (is_marker, text) runs; a marker is ``<...>`` or ``[...]``."""
    out: list[tuple[bool, str]] = []
    border, opener = 0, ""
    for pos, char in enumerate(text):
        if not opener and char in "<[":
            if border < pos:
                out.append((False, text[border:pos]))
            border, opener = pos, char
        elif opener and char == {"<": ">", "[": "]"}[opener]:
            out.append((True, text[border : pos + 1]))
            border, opener = pos + 1, ""
    if border < len(text):
        out.append((False, text[border:]))
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _common_suffix(a: str, b: str) -> int:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _diff_split(left: str, right: str) -> tuple[str, str]:
    """calculate_diff_split: the (left, right) parts that differ, marker-aligned."""
    ls, rs = _segments(left), _segments(right)
    if not ls:
        return "", right
    if not rs:
        return left, ""
    l0, l1, r0, r1 = 0, len(ls) - 1, 0, len(rs) - 1
    left_done = right_done = False
    while l0 != l1 and r0 != r1:
        advanced = False
        if ls[l0] == rs[r0]:
            l0, r0, advanced = l0 + 1, r0 + 1, True
        if ls[l1] == rs[r1]:
            if l0 != l1:
                l1 -= 1
            else:
                left_done = True
            if r0 != r1:
                r1 -= 1
            else:
                right_done = True
            advanced = True
        if not advanced:
            break
    if l0 == l1 and r0 != r1:
        if ls[l0] == rs[r1]:
            r1 -= 1
            left_done = True
        elif ls[l0] == rs[r0]:
            r0 += 1
            left_done = True
    elif r0 == r1 and l0 != l1:
        if ls[l1] == rs[r0]:
            l1 -= 1
            right_done = True
        elif ls[l0] == rs[r0]:
            l0 += 1
            right_done = True
    elif l0 == l1 and r0 == r1 and ls[l0] == rs[r0] and ls[l0][0]:
        left_done = right_done = True
    text_suffix = not ls[l1][0] and not rs[r1][0]
    text_prefix = not rs[r0][0] and not ls[l0][0]
    rest_left = "".join(t for _, t in ls[l0 : l1 if left_done else l1 + 1])
    rest_right = "".join(t for _, t in rs[r0 : r1 if right_done else r1 + 1])
    suffix = _common_suffix(rest_left, rest_right) if text_suffix else 0
    prefix = (
        _common_prefix(rest_left[: len(rest_left) - suffix], rest_right[: len(rest_right) - suffix])
        if text_prefix
        else 0
    )
    diff_left = rest_left[prefix : len(rest_left) - suffix]
    diff_right = rest_right[prefix : len(rest_right) - suffix]
    if not diff_left and diff_right and right.startswith(left):
        return "", right[len(left) :]
    return diff_left, diff_right


class _Reasoning:
    """Whether llama.cpp treats the template as reasoning, and its delimiters."""

    def __init__(self, compiled: jinja2.Template, template: ChatTemplate) -> None:
        self.compiled = compiled
        self.template = template
        source = template.source
        self.start = self.end = ""
        found = False
        special = _specialized_thinking(source)
        if special is None:
            found = self._presence()
            found = self._thinking_flag() or found
            if (
                not found
                and "content.split('</think>')" in source
                and "reasoning_content" not in source
                and "<SPECIAL_12>" not in source
            ):
                found, self.start, self.end = True, "<think>", "</think>"  # old Qwen
            if (
                "Write your thoughts between <think></think> and write your response "
                "between <response></response>" in source
            ):
                found, self.start, self.end = True, "<think>", "</think>"  # Granite 3.3
            if all(
                t in source
                for t in ("<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>", "<TOOL_RESPONSE>")
            ):
                found, self.start, self.end = True, "<think>\n", "</think>"  # Nemotron v2
            if "laguna_glm_thinking" in source:
                self.start, self.end = _trim_ascii(self.start), _trim_ascii(self.end)
        self.supported = found if special is None else special

    def _run(self, messages: list[dict[str, Any]], generation_prompt: bool, thinking: bool) -> str:
        # autoparser::apply_template: real special tokens, no BOS strip, no date
        context: dict[str, Any] = {
            "messages": messages,
            "bos_token": self.template.bos_token,
            "eos_token": self.template.eos_token,
            "enable_thinking": thinking,
        }
        if generation_prompt:
            context["add_generation_prompt"] = True
        try:
            return self.compiled.render(context)
        except Exception:
            return ""

    def _presence(self) -> bool:
        """compare_reasoning_presence: is reasoning_content shown, and delimited?"""
        user = {"role": "user", "content": _USER_MSG}
        plain = {"role": "assistant", "content": _ASSISTANT_MSG}
        with_reasoning = {**plain, "reasoning_content": _THINKING_CONTENT}
        output_a = self._run([user, plain], False, True)
        output_b = self._run([user, with_reasoning], False, True)
        if not output_a or not output_b:
            return False
        if _THINKING_CONTENT not in _diff_split(output_a, output_b)[1]:
            return False
        wrapped = _WRAPPED.search(output_b)
        if wrapped:
            self.start, self.end = wrapped.group(1), wrapped.group(2)
            return True
        delimited = _DELIMITED.search(output_b)
        if delimited and delimited.group(1):
            self.end = delimited.group(1)
            return True
        return False

    def _thinking_flag(self) -> bool:
        """compare_thinking_enabled: what does enable_thinking change in the prompt?"""
        user = [{"role": "user", "content": _USER_MSG}]
        output_a = self._run(user, True, False)
        output_b = self._run(user, True, True)
        if not output_a or not output_b:
            return False
        left, right = _diff_split(output_a, output_b)
        left_trimmed, right_trimmed = _trim_ascii(left), _trim_ascii(right)
        found = False
        if not left_trimmed and right:
            if right_trimmed and output_b.endswith(right_trimmed) and not self.start:
                self.start, found = right, True
        elif not right_trimmed and left:
            if left_trimmed and output_a.endswith(left_trimmed) and not self.end:
                segs = [seg for seg in _segments(output_a) if _trim_ascii(seg[1])]
                if len(segs) >= 2 and segs[-1][1] == left_trimmed and segs[-2][0]:
                    self.start = segs[-2][1]
                self.end, found = left, True
        elif left_trimmed and right_trimmed:
            # tail anchoring: one output's ending reappears in the other, followed by
            # exactly two markers (the opening and closing reasoning tags)
            for base, extended in ((output_b, output_a), (output_a, output_b)):
                anchor = base[-64:]
                pos = extended.rfind(anchor)
                if pos < 0 or pos + len(anchor) >= len(extended):
                    continue
                extra = _trim_ascii(extended[pos + len(anchor) :])
                if not extra:
                    continue
                segs = [seg for seg in _segments(extra) if _trim_ascii(seg[1])]
                if len(segs) == 2 and segs[0][0] and segs[1][0]:
                    self.start = self.start or segs[0][1]
                    self.end = self.end or segs[1][1]
                    found = True
                    break
        return found or (not self.start and bool(self.end))
