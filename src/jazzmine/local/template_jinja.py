"""The Jinja engine a chat template runs in: jinja2's sandbox, behaving as llama.cpp's.

jinja2's immutable sandbox, adjusted to llama.cpp's own engine in ``common/jinja/``.
What differs from plain jinja2 and where llama.cpp does it: ``None`` or undefined plus
a string is the string (``workaround_concat_null_with_str`` in ``runtime.cpp``);
undefined values can be read through (``value_undefined`` in ``value.h``); the built-ins
``raise_exception``, ``strftime_now`` and ``tojson`` (``value.cpp``); ASCII-only string
methods (``string.cpp``, see ``template_strings.py``); ``{% generation %}`` accepted and
ignored (``parser.cpp``); blocks trimmed and the final newline dropped (``lexer.cpp``).
Compiled templates are cached by source.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import jinja2
import jinja2.parser
import jinja2.runtime
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import LLMInvalidRequestError
from .template_cache import BoundedCache
from .template_probe import is_string, mark_used_deep, selectattr
from .template_source import patch_source
from .template_strings import STRING_FUNCTIONS, byte_length


def run(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """Render ``compiled``; any failure is an LLMInvalidRequestError saying why."""
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


def strftime_now(fmt: str, local: time.struct_time) -> str:
    """The ``strftime_now`` built-in, for the rendering whose clock reads ``local``."""
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
    mark_used_deep(value)
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
        # str methods go through the byte-wise versions llama.cpp uses (template_strings)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            replacement = STRING_FUNCTIONS.get(getattr(__obj, "__name__", ""))
            if replacement is not None:
                # jinja2 threads its scope bookkeeping through calls; not ours to keep
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return replacement(owner, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


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
    for name, function in STRING_FUNCTIONS.items():
        env.filters[name] = function
    env.filters["trim"] = STRING_FUNCTIONS["strip"]
    env.filters["length"] = env.filters["count"] = byte_length
    env.filters["selectattr"] = selectattr
    env.tests["string"] = is_string
    env.globals["raise_exception"] = _raise_exception
    # replaced per rendering by one bound to that rendering's clock
    env.globals["strftime_now"] = lambda fmt: strftime_now(fmt, time.localtime())
    return env


_lock = threading.Lock()  # guards the one environment's creation
_environment: ImmutableSandboxedEnvironment | None = None
_compiled: BoundedCache[str, jinja2.Template] = BoundedCache()


def compile_template(source: str) -> jinja2.Template:
    """``source`` parsed in the sandbox (cached); a parse failure is an LLMInvalidRequestError."""
    global _environment
    cached = _compiled.get(source)
    if cached is not None:
        return cached
    with _lock:
        if _environment is None:
            _environment = _make_environment()
        env = _environment
    try:
        compiled = env.from_string(patch_source(source))
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise LLMInvalidRequestError(
            f"chat template could not be parsed: {exc.message}{where}"
        ) from exc
    except SecurityError as exc:
        raise LLMInvalidRequestError(f"chat template tried an unsafe operation: {exc}") from exc
    except TemplateError as exc:
        raise LLMInvalidRequestError(f"chat template could not be parsed: {exc}") from exc
    _compiled.put(source, compiled)
    return compiled


def clear_cache() -> None:
    """Forget the compiled templates."""
    _compiled.clear()
