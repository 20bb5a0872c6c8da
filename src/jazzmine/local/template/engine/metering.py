"""The parsed template rewritten so the work the sandbox has no hook for is counted.

jinja2's sandbox sees calls, attribute reads and ``+``, but not loop iterations, ``~``,
``*``, ``**``, ``%`` or slices. Those are rewritten (before compiling) into calls of
filters registered here, which count a step or check the result's size against the
caps of ``budget``. No llama.cpp counterpart: a sandbox limit of ours.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import markup_join, str_join
from jinja2.visitor import NodeTransformer

from .budget import Budget, TemplateLimitError, built, check_text, current_budget
from .operators import check_binop
from .shape import check_printable

# Filters the rewritten template calls; a space keeps them out of templates' reach.
_ITERATE = "jazzmine iterate"
_JOIN = "jazzmine join"
_SLICE = "jazzmine slice"
_BINOP = "jazzmine binop"


def _metered(iterable: Iterable[Any], budget: Budget) -> Iterator[Any]:
    for item in iterable:
        budget.step()
        yield item


@jinja2.pass_context
def _iterate(context: jinja2.runtime.Context, iterable: Any) -> Any:
    """What a ``{% for %}`` loops over: the same items, one step each."""
    budget = current_budget()
    return iterable if budget is None else _metered(iterable, budget)


@jinja2.pass_context
def _joined(context: jinja2.runtime.Context, values: list[Any]) -> str:
    """The ``~`` operator: as jinja2 joins the operands, with the size checked first."""
    check_printable(*values)
    parts = [value if isinstance(value, str) else str(value) for value in values]
    check_text(sum(map(len, parts)))
    eval_ctx = context.eval_ctx
    joiner = markup_join if eval_ctx.autoescape or eval_ctx.volatile else str_join
    return built(joiner(parts))  # type: ignore[no-any-return]


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
}


@jinja2.pass_context
def _binop(context: jinja2.runtime.Context, left: Any, name: str, right: Any) -> Any:
    """``left <name> right`` for ``*``, ``**`` and ``%``, refused when it would be outsized."""
    check_binop(name, left, right)
    return built(_OPERATORS[name](left, right))


@jinja2.pass_context
def _sliced(context: jinja2.runtime.Context, value: Any, start: Any, stop: Any, step: Any) -> Any:
    """``value[start:stop:step]``: the same slice, its copy capped and charged."""
    return built(value[start:stop:step])


def add_metering_filters(env: jinja2.Environment) -> None:
    """Register on ``env`` the filters a template rewritten by ``metered`` calls."""
    env.filters[_ITERATE] = _iterate
    env.filters[_JOIN] = _joined
    env.filters[_SLICE] = _sliced
    env.filters[_BINOP] = _binop


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
            check_binop(node.operator, left, right)
        except (nodes.Impossible, TemplateLimitError):
            symbol = nodes.Const(node.operator, lineno=node.lineno)
            return self._call(node.left, _BINOP, [symbol, node.right])
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


def metered(env: jinja2.Environment, tree: nodes.Template) -> nodes.Template:
    """``tree`` (parsed by ``env``) rewritten to call the metering filters."""
    rewritten: nodes.Template = _Metering(env).visit(tree)
    return rewritten
