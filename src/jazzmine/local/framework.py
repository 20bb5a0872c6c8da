"""The jazzmine framework's own LLM classes, when the framework is installed.

Inside the framework, ``LocalLLM`` has to be one of its providers: an instance of its
``BaseLLM``, raising errors its ``except`` clauses catch, returning objects its code reads.
So this package's base class, error tree and data classes derive from the framework's
when it is there, and from plain Python classes when it is not.

``jazzmine`` is a regular package (with an ``__init__.py``) only when the framework is
installed; standalone it is an implicit namespace package holding just ``jazzmine.local``,
and then nothing of the framework is imported or looked for.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import jazzmine


def _framework_module(name: str) -> ModuleType | None:
    if getattr(jazzmine, "__file__", None) is None:
        return None  # namespace package: the framework is not installed
    try:
        return importlib.import_module(f"jazzmine.core.llm.{name}")
    except ImportError:
        return None


_base = _framework_module("base")
_errors = _framework_module("errors")
_types = _framework_module("types")

#: True when the jazzmine framework's ``jazzmine.core.llm`` was found and is extended.
FRAMEWORK_PRESENT = _base is not None and _errors is not None and _types is not None


def framework_class(module: ModuleType | None, name: str, fallback: type) -> Any:
    """The framework's class ``name`` from ``module``, else ``fallback``.

    Typed ``Any`` on purpose: it is used as a base class whose identity depends on what is
    installed, which no static type can say.
    """
    found = getattr(module, name, None) if FRAMEWORK_PRESENT else None
    return found if isinstance(found, type) else fallback


def base_class(name: str, fallback: type) -> Any:
    return framework_class(_base, name, fallback)


def error_class(name: str) -> Any:
    return framework_class(_errors, name, Exception)


def data_class(name: str) -> Any:
    return framework_class(_types, name, object)
