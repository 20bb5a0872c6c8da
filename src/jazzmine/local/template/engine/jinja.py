"""The Jinja engine a chat template runs in: compiled once, rendered within bounds.

A template's source is patched (``template/engine/source.py``), parsed in the sandboxed
environment that behaves as llama.cpp's engine in ``common/jinja/``
(``template/engine/sandbox.py``), rewritten so loops and outsized operators are counted
(``template/engine/metering.py``) and compiled; compiled templates are cached by source.
Every rendering is bounded in time, steps and size (``template/engine/budget.py``), and any
failure of the template is reported as an invalid request.
"""

from __future__ import annotations

import threading
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ...errors import DeadlineExceeded, LLMInvalidRequestError
from .budget import bounded_render
from .builtins import RaisedByTemplate, strftime_now
from .cache import BoundedCache
from .metering import metered
from .sandbox import make_environment
from .source import patch_source

# strftime_now is the built-in's implementation, used by template.py from here
__all__ = ["clear_cache", "compile_template", "run", "strftime_now"]


def run(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """Render ``compiled``; any failure is an LLMInvalidRequestError saying why.

    DeadlineExceeded passes through: running out of time is not the template's fault.
    """
    try:
        return bounded_render(compiled, context)
    except DeadlineExceeded:
        raise
    except RaisedByTemplate as exc:
        raise LLMInvalidRequestError(exc.text) from exc
    except SecurityError as exc:
        raise LLMInvalidRequestError(f"chat template tried an unsafe operation: {exc}") from exc
    except TemplateError as exc:
        raise LLMInvalidRequestError(f"chat template failed: {exc}") from exc
    except Exception as exc:  # a template can trip any Python error (e.g. None + str)
        raise LLMInvalidRequestError(f"chat template failed: {type(exc).__name__}: {exc}") from exc


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
            _environment = make_environment()
        env = _environment
    try:
        tree = env.parse(patch_source(source))
        tree = metered(env, tree)
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
