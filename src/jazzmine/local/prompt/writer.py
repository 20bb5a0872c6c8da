"""How a call's prompt is written: the spec's flattening, or the model's chat template.

``prompt_format="auto"`` writes in the model's own template when the transport reaches
llama.cpp and the GGUF carries one; ``"template"`` insists on a template; ``"flat"`` is
the spec's ``Role: content`` text. A template given by the caller wins over the model's.
Learned once per instance: the GGUF header read and the binary probe happen on the first
call, never at import or construction.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import LLMInvalidRequestError
from ..gguf.reader import GGUFError, TokenizerInfo, read_tokenizer_info
from ..transports.base import Transport
from ..types import MessagePart
from .messages import NEXT_TURN_MARKERS, flatten

if TYPE_CHECKING:
    from ..template.engine.source import ChatTemplate

# The template engine (jinja2 and its sandbox, about 60 ms of import) is imported by the
# first templated prompt, so a program that never writes one never pays for it: one of
# the three lazy edges named in the package docstring.

_UNKNOWN_TOKENS = TokenizerInfo(None, "", "", True, False)


class WrittenPrompt(NamedTuple):
    prompt: str
    turn_markers: tuple[str, ...]  # where the model's turn ends: the reply stops there
    prompt_format: str  # "template" or "flat"


class PromptWriter:
    def __init__(
        self,
        prompt_format: str,
        chat_template: str | None,
        model_path: Callable[[], str | None],
        allow_control_tokens: bool = False,
    ) -> None:
        self.prompt_format = prompt_format
        self._model_path = model_path
        self._allow_control_tokens = allow_control_tokens
        self._lock = threading.Lock()
        self._template: ChatTemplate | None = None
        self._resolved = False
        if chat_template is not None:  # a broken one fails at construction, whatever the format
            self._template = self._caller_template(chat_template)
            self._resolved = True

    def write(
        self,
        messages: Sequence[MessagePart],
        transport: Transport,
        deadline: float | None,
        *,
        tools: list[dict[str, Any]] | None = None,
        enable_thinking: bool | None = None,
        flat: bool = False,
    ) -> WrittenPrompt:
        """The prompt text, the markers that end the model's turn, the format's name. A
        template's rendering stops at ``deadline`` (``DeadlineExceeded``). ``tools`` go
        into the template's ``tools`` variable; ``enable_thinking=False`` turns the
        template's thinking off where it can. ``flat``: the spec's flattening for this
        prompt, whatever the format (a part known to answer better so, see interop)."""
        template = None if flat else self.template(transport)
        if not self._allow_control_tokens and transport.runs_llama_cpp():
            # Content cannot forge turns: llama.cpp reads control-token text anywhere in
            # the prompt as the token itself, in both modes, so such text in a caller's
            # string is broken (control_text) before the prompt is written.
            # The tools' definitions are the caller's strings too (names, descriptions,
            # enum values, any string in a schema, keys included): printed by the
            # template's tojson, they are broken the same way.
            from .control_text import neutralise_messages, neutralise_tools

            texts = self._control_texts(template)
            messages = neutralise_messages(messages, texts)
            tools = neutralise_tools(tools, texts)
        if template is None:
            return WrittenPrompt(flatten(messages), NEXT_TURN_MARKERS, "flat")
        from ..template.render import end_of_turn_markers, render

        switches: dict[str, Any] = {}
        if tools:
            switches["tools"] = tools
        if enable_thinking is not None:
            switches["enable_thinking"] = enable_thinking
        prompt = render(template, messages, deadline=deadline, **switches)
        if tools:
            from ..template.tools import tool_template

            template = tool_template(template)  # the one rendered: its turns end the reply
        return WrittenPrompt(prompt, end_of_turn_markers(template), "template")

    @property
    def model_path(self) -> str | None:
        return self._model_path()

    def _control_texts(self, template: ChatTemplate | None) -> tuple[str, ...]:
        from .control_text import control_texts

        source = template.source if template is not None else None
        path = self._model_path()
        if path is not None and os.path.exists(path):
            with contextlib.suppress(OSError, GGUFError):
                return control_texts(path, source)
        return control_texts(None, source)

    def template(self, transport: Transport) -> ChatTemplate | None:
        if self.prompt_format == "flat":
            return None
        with self._lock:
            if not self._resolved:
                self._template = self._model_template(transport)
                self._resolved = True
            return self._template

    def _model_template(self, transport: Transport) -> ChatTemplate | None:
        from ..template.render import template_from_gguf

        found = None
        path = self._model_path()
        if path is not None and os.path.exists(path) and transport.runs_llama_cpp():
            try:
                found = template_from_gguf(path)
            except (OSError, GGUFError):
                found = None  # not a readable GGUF: llama.cpp will say what is wrong with it
        if found is None and self.prompt_format == "template":
            raise LLMInvalidRequestError(
                f"prompt_format='template' but the model {path!r} carries no chat template "
                "(tokenizer.chat_template); pass chat_template= (a Jinja string or file)"
            )
        return found

    def _caller_template(self, value: str) -> ChatTemplate:
        from ..template.render import load_template, template_with_tokens

        tokens = _UNKNOWN_TOKENS
        path = self._model_path()
        if path is not None and os.path.exists(path):
            with contextlib.suppress(OSError, GGUFError):
                tokens = read_tokenizer_info(path)
        return template_with_tokens(
            load_template(value, tokens.bos_token, tokens.eos_token), tokens
        )
