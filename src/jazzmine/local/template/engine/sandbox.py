"""The sandboxed jinja2 environment a chat template runs in, behaving as llama.cpp's.

jinja2's immutable sandbox, adjusted to llama.cpp's own engine in ``common/jinja/``.
What differs from plain jinja2 and where llama.cpp does it: ``None`` or undefined plus
a string is the string (``workaround_concat_null_with_str`` in ``runtime.cpp``);
undefined values can be read through (``value_undefined`` in ``value.h``); the built-ins
of ``template/engine/builtins.py`` (``value.cpp``); ASCII-only string methods (``string.cpp``,
see ``template/engine/strings.py``); ``{% generation %}`` accepted and ignored
(``parser.cpp``); blocks trimmed and the final newline dropped (``lexer.cpp``); append
and pop on the lists a template built, never on the caller's (``value.cpp``, see
``template/engine/owned.py``). Calls,
``+``, filters and output are checked against the caps of ``budget``.
"""

from __future__ import annotations

import time
import types
from typing import Any

import jinja2
import jinja2.parser
import jinja2.runtime
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from .budget import built, check_items, current_budget, step
from .builtins import lipsum, raise_exception, safe, strftime_now, string, tojson
from .filters import metered_filter
from .metering import add_metering_filters
from .operators import check_binop, check_method, joined_items
from .output import BufferedCodeGenerator, OutputBuffer, concat, finalize
from .owned import may_change
from .probe import is_string, selectattr
from .shape import check_printable
from .strings import STRING_FUNCTIONS, byte_length


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
    # workaround_concat_null_with_str); Python would raise TypeError. (*, ** and % are
    # checked through the rewrite in template_metering, which keeps jinja2's constant
    # folding.)
    intercepted_binops = frozenset({"+"})
    # every output, macro and block body goes through the capped join, and macro and
    # block bodies are collected in a capped buffer
    concat = staticmethod(concat)
    output_buffer = staticmethod(OutputBuffer)
    code_generator_class = BufferedCodeGenerator

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # llama.cpp's arrays have append and pop; a list the template built may use
        # them, the caller's lists (messages, tools) stay immutable (owned.py)
        if may_change(obj, attr):
            return SandboxedEnvironment.is_safe_attribute(self, obj, attr, value)
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "+":
            if left is None and isinstance(right, str):
                return right
            if right is None and isinstance(left, str):
                return left
        check_binop(operator, left, right)
        return built(super().call_binop(context, operator, left, right))

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        step()
        # The sandbox hands out str.format as a plain-function wrapper; the method it
        # wraps says whose it is. Only a builtin method's __self__ and __name__ are
        # trusted: a namespace can hold any attribute a template sets on it.
        method = __obj
        if isinstance(method, types.FunctionType):
            method = getattr(method, "__wrapped__", method)
        owner = name = None
        if isinstance(method, types.BuiltinMethodType):
            owner, name = method.__self__, method.__name__
        if isinstance(owner, (str, bytes, int)) and isinstance(name, str):
            check_method(owner, name, args, kwargs)
            if name == "join" and isinstance(owner, (str, bytes)) and len(args) == 1:
                args = (joined_items(owner, args[0]),)
        elif isinstance(owner, list) and name == "append":
            # a list grows one item at a time: capped and charged like a built one
            check_items(len(owner) + 1)
            budget = current_budget()
            if budget is not None:
                budget.build(1)
        elif __obj is raise_exception:
            check_printable(*args)  # its message is str() of the argument
        # str methods go through the byte-wise versions llama.cpp uses (template_strings)
        if isinstance(owner, str) and isinstance(name, str):
            replacement = STRING_FUNCTIONS.get(name)
            if replacement is not None:
                # jinja2 threads its scope bookkeeping through calls; not ours to keep
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return built(replacement(owner, *args, **kwargs))
        return built(super().call(__context, __obj, *args, **kwargs))


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged.

    Hugging Face templates use it to mark assistant text for training masks; llama.cpp
    accepts and ignores it.
    """

    tags = {"generation"}  # noqa: RUF012 - jinja2 declares this as a class attribute

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def make_environment() -> ImmutableSandboxedEnvironment:
    """A new sandboxed environment with llama.cpp's behaviour and every check in place."""
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        # like llama.cpp's lexer: \r\n and \r read as \n, one final newline dropped
        keep_trailing_newline=False,
        extensions=[loopcontrols, _GenerationTag],
        undefined=_Undefined,
        autoescape=False,
        # printing a value that holds itself many times over is refused before str() runs
        finalize=finalize,
    )
    env.filters["tojson"] = tojson
    env.filters["safe"] = safe
    env.filters["string"] = string
    for name, function in STRING_FUNCTIONS.items():
        env.filters[name] = function
    env.filters["trim"] = STRING_FUNCTIONS["strip"]
    env.filters["length"] = env.filters["count"] = byte_length
    env.filters["selectattr"] = selectattr
    env.tests["string"] = is_string
    # every filter counts as a step, is guarded against outsized results, and is capped
    for name, function in list(env.filters.items()):
        env.filters[name] = metered_filter(name, function)
    # (added after: the filters the rewritten template calls meter themselves)
    add_metering_filters(env)
    env.globals["lipsum"] = lipsum
    env.globals["raise_exception"] = raise_exception
    # replaced per rendering by one bound to that rendering's clock
    env.globals["strftime_now"] = lambda fmt: strftime_now(fmt, time.localtime())
    return env
