"""The Jinja engine a chat template runs in: jinja2's sandbox, behaving as llama.cpp's.

jinja2's immutable sandbox, adjusted to llama.cpp's own engine in ``common/jinja/``.
What differs from plain jinja2 and where llama.cpp does it: ``None`` or undefined plus
a string is the string (``workaround_concat_null_with_str`` in ``runtime.cpp``);
undefined values can be read through (``value_undefined`` in ``value.h``); the built-ins
``raise_exception``, ``strftime_now`` and ``tojson`` (``value.cpp``); ASCII-only string
methods (``string.cpp``, see ``template_strings.py``); ``{% generation %}`` accepted and
ignored (``parser.cpp``); blocks trimmed and the final newline dropped (``lexer.cpp``).
Every rendering is bounded in time, steps and size (``template_budget.py``): loops,
``~``, ``*``, ``**``, ``%`` and slices are rewritten to pass through checking filters,
and calls, filters and output are checked. Compiled templates are cached by source.
"""

from __future__ import annotations

import json
import threading
import time
import types
from typing import Any

import jinja2
import jinja2.parser
import jinja2.runtime
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from . import template_budget as budget
from .errors import DeadlineExceeded, LLMInvalidRequestError
from .template_cache import BoundedCache
from .template_probe import is_string, mark_used_deep, selectattr
from .template_source import patch_source
from .template_strings import STRING_FUNCTIONS, byte_length


def run(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """Render ``compiled``; any failure is an LLMInvalidRequestError saying why.

    DeadlineExceeded passes through: running out of time is not the template's fault.
    """
    try:
        return budget.bounded_render(compiled, context)
    except DeadlineExceeded:
        raise
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


class _CodeGenerator(CodeGenerator):
    """jinja2's code generator, with macro and block output in a capped buffer."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


class _Environment(ImmutableSandboxedEnvironment):
    # llama.cpp concatenates None with a string as if it were "" (its
    # workaround_concat_null_with_str); Python would raise TypeError. (*, ** and % are
    # checked through the rewrite in _Metering, which keeps jinja2's constant folding.)
    intercepted_binops = frozenset({"+"})
    # every output, macro and block body goes through the capped join, and macro and
    # block bodies are collected in a capped buffer
    concat = staticmethod(budget.concat)
    output_buffer = staticmethod(budget.OutputBuffer)
    code_generator_class = _CodeGenerator

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "+":
            if left is None and isinstance(right, str):
                return right
            if right is None and isinstance(left, str):
                return left
        budget.check_binop(operator, left, right)
        return budget.built(super().call_binop(context, operator, left, right))

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget.step()
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
            budget.check_method(owner, name, args, kwargs)
            if name == "join" and isinstance(owner, (str, bytes)) and len(args) == 1:
                args = (budget.joined_items(owner, args[0]),)
        elif __obj is _raise_exception:
            budget.check_printable(*args)  # its message is str() of the argument
        # str methods go through the byte-wise versions llama.cpp uses (template_strings)
        if isinstance(owner, str) and isinstance(name, str):
            replacement = STRING_FUNCTIONS.get(name)
            if replacement is not None:
                # jinja2 threads its scope bookkeeping through calls; not ours to keep
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return budget.built(replacement(owner, *args, **kwargs))
        return budget.built(super().call(__context, __obj, *args, **kwargs))


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged.

    Hugging Face templates use it to mark assistant text for training masks; llama.cpp
    accepts and ignores it.
    """

    tags = {"generation"}  # noqa: RUF012 - jinja2 declares this as a class attribute

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


# Filters the rewritten template calls; a space keeps them out of templates' reach.
_ITERATE = "jazzmine iterate"
_JOIN = "jazzmine join"
_SLICE = "jazzmine slice"
_BINOP = "jazzmine binop"


class _Metering(NodeTransformer):
    """Rewrites a parsed template so the work the sandbox has no hook for is counted.

    ``{% for x in items %}`` loops over ``items|iterate`` (the same items, one step
    each); ``a ~ b`` becomes ``[a, b]|join``, ``a * b`` (and ``**``, ``%``) becomes
    ``a|binop('*', b)`` and ``s[a:b]`` becomes ``s|slice(a, b, none)``: the same
    operations, their results checked before (or, for slices, after) they are built.

    jinja2 folds constant expressions while compiling, and folding can differ from
    running (a folded slice goes through the sandbox's getitem, a running one is a
    plain subscript), so an expression jinja2 would fold is left as it is, unless
    folding it is itself the outsized operation (``'a' * 10**9``).
    """

    def __init__(self, environment: jinja2.Environment) -> None:
        self.eval_ctx = nodes.EvalContext(environment)

    def _folds(self, node: nodes.Expr) -> bool:
        try:
            node.as_const(self.eval_ctx)
        except nodes.Impossible:
            return False
        return True

    def _call(self, value: nodes.Node, name: str, args: list[nodes.Expr]) -> nodes.Filter:
        return nodes.Filter(value, name, args, [], None, None, lineno=value.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._call(node.iter, _ITERATE, [])
        return node

    def _binop(self, node: nodes.BinExpr) -> nodes.Node:
        self.generic_visit(node)
        try:
            left = node.left.as_const(self.eval_ctx)
            right = node.right.as_const(self.eval_ctx)
            budget.check_binop(node.operator, left, right)
        except (nodes.Impossible, budget.TemplateLimitError):
            operator = nodes.Const(node.operator, lineno=node.lineno)
            return self._call(node.left, _BINOP, [operator, node.right])
        return node  # small constants: jinja2 folds them as ever

    visit_Mul = visit_Pow = visit_Mod = _binop

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice) or self._folds(node):
            return node
        bounds: list[nodes.Expr] = [
            nodes.Const(None, lineno=node.lineno) if part is None else part
            for part in (node.arg.start, node.arg.stop, node.arg.step)
        ]
        return self._call(node.node, _SLICE, bounds)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        if self._folds(node):
            return node
        return self._call(nodes.List(node.nodes, lineno=node.lineno), _JOIN, [])


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        # like llama.cpp's lexer: \r\n and \r read as \n, one final newline dropped
        keep_trailing_newline=False,
        extensions=[loopcontrols, _GenerationTag],
        undefined=_Undefined,
        autoescape=False,
        # printing a value that holds itself many times over is refused before str() runs
        finalize=budget.finalize,
    )
    env.filters["tojson"] = _tojson
    for name, function in STRING_FUNCTIONS.items():
        env.filters[name] = function
    env.filters["trim"] = STRING_FUNCTIONS["strip"]
    env.filters["length"] = env.filters["count"] = byte_length
    env.filters["selectattr"] = selectattr
    env.tests["string"] = is_string
    # every filter counts as a step, is guarded against outsized results, and is capped
    for name, function in list(env.filters.items()):
        env.filters[name] = budget.metered_filter(name, function)
    env.filters[_ITERATE] = budget.iterate
    env.filters[_JOIN] = budget.joined
    env.filters[_SLICE] = budget.sliced
    env.filters[_BINOP] = budget.binop
    env.globals["lipsum"] = budget.lipsum
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
        tree = env.parse(patch_source(source))
        tree = _Metering(env).visit(tree)
        tree.set_environment(env)
        compiled = env.template_class.from_code(env, env.compile(tree), env.make_globals(None))
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise LLMInvalidRequestError(
            f"chat template could not be parsed: {exc.message}{where}"
        ) from exc
    except SecurityError as exc:
        raise LLMInvalidRequestError(f"chat template tried an unsafe operation: {exc}") from exc
    except TemplateError as exc:
        raise LLMInvalidRequestError(f"chat template could not be parsed: {exc}") from exc
    except Exception as exc:
        # parsing and compiling are Python too: a 5000-digit literal is a ValueError, a
        # deeply nested expression a RecursionError
        raise LLMInvalidRequestError(
            f"chat template could not be parsed: {type(exc).__name__}: {exc}"
        ) from exc
    _compiled.put(source, compiled)
    return compiled


def clear_cache() -> None:
    """Forget the compiled templates."""
    _compiled.clear()
