"""Chat templates: a model's Jinja chat template rendered the way llama.cpp renders it.

The prompt jazzmine builds must be byte-identical to what llama-server's
``/apply-template`` returns for the pinned llama.cpp, so that a model sees the same
text whichever way it is run. llama.cpp renders with its own Jinja engine and, before
that, rewrites the messages (``common_chat_templates_apply_jinja`` in
``common/chat.cpp``); both halves are reproduced on top of jinja2's immutable sandbox,
with the globals Hugging Face's ``apply_chat_template`` provides.

This module is the entry point and mirrors the steps of ``common/chat.cpp``: where the
template comes from (the GGUF file, a file, text, or the ChatML fallback), checking it
(``common_chat_verify_template``), and one rendering
(``common_chat_template_direct_apply_impl``). The parts live beside it:
``engine.source`` (the ChatTemplate type, the fallback, known edits),
``engine.jinja`` (the sandboxed engine), ``engine.strings`` (ASCII string methods),
``caps`` and ``engine.probe`` (capability probes), ``reasoning`` and
``diff`` (reasoning detection), ``rewrite`` (message rewrites and
prefill), ``specialized`` (what llama.cpp's hand-written formats reshape),
``tools`` (tools, tool history, the tool-use variant),
``markers`` (turn-end stop strings).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from ..errors import LLMInvalidRequestError
from ..gguf.reader import TokenizerInfo, read_tokenizer_info
from ..gguf.reader import clear_cache as _clear_gguf_cache
from ..types import MessagePart
from . import caps as template_caps
from . import thinking as template_thinking
from .caps import capabilities
from .engine import jinja as template_jinja
from .engine.budget import MAX_TEXT, TemplateLimitError, deadline_scope
from .engine.jinja import compile_template, run, strftime_now
from .engine.source import CHATML_TEMPLATE, ChatTemplate, named_source
from .handlers import handler, handler_continuation
from .markers import end_of_turn_markers
from .rewrite import continuation, generation_prompt, prepare
from .specialized import adjust_messages, adjust_prompt
from .tools import template_tools, tool_template

__all__ = [
    "CHATML_TEMPLATE",
    "ChatTemplate",
    "clear_cache",
    "end_of_turn_markers",
    "load_template",
    "render",
    "template_from_gguf",
    "template_with_tokens",
    "tool_template",
]

# the GGUF key of a model's tool-use template (LLM_KV_TOKENIZER_CHAT_TEMPLATE, "tool_use")
TOOL_USE_KEY = "tokenizer.chat_template.tool_use"


def template_from_gguf(path: str | os.PathLike[str]) -> ChatTemplate | None:
    """The template stored in a GGUF file, or None when it has none.

    Reads only the header (cached per path, mtime and size), never the weights, and
    decodes only the BOS and EOS strings of the vocabulary. A tool-use variant
    (``tokenizer.chat_template.tool_use``) comes along as ``tool_use_source``; as in
    common_chat_templates_init, it is also the template of a model whose own is
    missing, empty or "chatml", and it is ignored when it does not parse.
    """
    info = read_tokenizer_info(path)  # one walk of the header, the tool-use key included
    tool_use = info.chat_template_tool_use or None
    source = info.chat_template
    own = source not in (None, "", "chatml")
    if tool_use is not None and not own:
        source = tool_use
    if source is None:
        return None
    if tool_use is not None and own:
        try:
            compile_template(tool_use)
        except LLMInvalidRequestError:
            tool_use = None  # llama.cpp logs it and renders with the main template
    return template_with_tokens(named_source(source), info, tool_use)


def template_with_tokens(
    source: str, info: TokenizerInfo, tool_use_source: str | None = None
) -> ChatTemplate:
    """``source`` with the model's BOS/EOS strings and whether its tokenizer adds them."""
    return ChatTemplate(
        source, info.bos_token, info.eos_token, info.add_bos, info.add_eos, tool_use_source
    )


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
    source = named_source(source)
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
    deadline: float | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    enable_thinking: bool | None = None,
    prefill_final: bool = True,
) -> str:
    """The prompt text llama-server's ``/apply-template`` produces for ``messages``.

    ``tools`` (llama.cpp's shape, ``Tool.as_template_tool()``) reach the template as
    ``tools`` only when there are some, and then the model's tool-use variant renders
    if it has one. ``enable_thinking`` None leaves the template's ``enable_thinking`` to
    llama-server's default (on for the templates it finds reasoning); False or True is
    ``chat_template_kwargs={"enable_thinking": ...}`` (``--reasoning off``/``on``).

    Raises LLMInvalidRequestError when the template does not parse, raises (its message
    is the error's), attempts something the sandbox forbids, or does more work or builds
    more text than a rendering may (``engine.budget``); or when a tool or tool call is
    malformed. Past ``deadline`` (a ``time.monotonic()`` value) the rendering stops with
    DeadlineExceeded. ``prefill_final=False`` renders a trailing assistant message as
    the template writes a finished turn (for the template analysis), not as a prefill.
    """
    with deadline_scope(deadline):
        tool_list = template_tools(tools) if tools else []
        used = tool_template(template) if tool_list else template
        compiled = compile_template(used.source)
        try:
            caps = capabilities(used)
            # llama-server decides its default once, from the template without tools
            default = caps if used is template else capabilities(template)
        except TemplateLimitError as exc:
            # a probe rendering ran out of steps or room: the prompt would too
            raise LLMInvalidRequestError(f"chat template failed: {exc}") from exc
        thinking = default.thinking if enable_thinking is None else enable_thinking
        now = time.time()
        msgs, prefill = prepare(messages, used.source, caps, prefill_final=prefill_final)
        # the hand-written formats of llama.cpp that reshape the messages or the prompt
        kind = handler(used.source)
        msgs = adjust_messages(kind, msgs)
        if prefill is not None:
            # the model continues the prefilled message instead of starting a new one
            add_generation_prompt = False

        def apply(generation_prompt: bool) -> str:
            return _apply(compiled, used, msgs, generation_prompt, thinking, tool_list, now)

        rendered = apply(add_generation_prompt)
        prompt = adjust_prompt(kind, rendered, add_generation_prompt)
        if prefill:
            generation = generation_prompt(rendered, apply(True))
            how = handler_continuation(kind, used.source, prompt, generation, prefill.reasoning)
            if how is None:
                how = continuation(generation, caps)
            prompt += how.text(prefill.reasoning, prefill.content)
        if len(prompt) > MAX_TEXT:
            # the prefill continuation is added outside the template's own output cap
            raise LLMInvalidRequestError(f"chat template output is over {MAX_TEXT} characters")
        return prompt


def clear_cache() -> None:
    """Forget cached GGUF headers, compiled templates, template capabilities and the
    reasoning formats learnt from templates."""
    _clear_gguf_cache()
    template_jinja.clear_cache()
    template_caps.clear_cache()
    template_thinking.clear_cache()


def _apply(
    compiled: jinja2.Template,
    template: ChatTemplate,
    msgs: list[dict[str, Any]],
    add_generation_prompt: bool,
    enable_thinking: bool,
    tools: list[dict[str, Any]],
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
        "strftime_now": lambda fmt: strftime_now(fmt, local),
    }
    # llama.cpp sets tools only when there are some: templates test "tools is defined"
    if tools:
        context["tools"] = tools
    # llama.cpp only sets the flag when true, so a template sees it undefined otherwise.
    if add_generation_prompt:
        context["add_generation_prompt"] = True
    text = run(compiled, context)
    if template.add_bos and text.startswith(template.bos_token):
        text = text[len(template.bos_token) :]
    if template.add_eos and template.eos_token and text.endswith(template.eos_token):
        text = text[: -len(template.eos_token)]
    return text
