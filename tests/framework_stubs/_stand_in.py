"""Import-only stand-ins for the heavy libraries the jazzmine framework imports eagerly.

The framework's package ``__init__`` imports every part of the framework, and with them
torch, transformers, onnxruntime, database drivers, docker and AWS clients, none of which
the LLM-calling parts (the enhancer, the flow selector, the summariser, an agent turn
without memory, tools or server) touch. The framework test puts this folder on
``PYTHONPATH`` so those imports succeed without installing gigabytes.

A stand-in module imports, and so do the names the framework imports from it by name;
anything else about it raises ``StandInUsed``: reading another attribute, calling or
instantiating a placeholder, or reading one of its attributes. Every such use is also
recorded in ``USED``, because the framework swallows many exceptions: the test reads
``USED`` at the end of each script and fails if anything was touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

#: "module.name" for every use of a stand-in, in order.
USED: list[str] = []


class StandInUsed(RuntimeError):
    """A stand-in for a library that the framework test does not install was used."""


def _refuse(what: str) -> NoReturn:
    USED.append(what)
    raise StandInUsed(
        f"{what} belongs to a library the framework test replaces with an import-only "
        "stand-in (tests/framework_stubs); the code under test should not need it"
    )


class _PlaceholderType(type):
    """Metaclass of a placeholder: the class object exists, using it in any way raises."""

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(f"{cls.__module__}.{cls.__qualname__}()")

    def __getattr__(cls, name: str) -> NoReturn:
        _refuse(f"{cls.__module__}.{cls.__qualname__}.{name}")


def placeholder(module: str, name: str, *, exception: bool = False) -> type:
    """A name imported with ``from module import name``.

    ``exception=True`` makes it an Exception subclass, so an ``except name:`` clause stays
    valid (it simply never matches: nothing raises a stand-in's exception).
    """
    bases: tuple[type, ...] = (Exception,) if exception else ()
    return _PlaceholderType(name, bases, {"__module__": module, "__qualname__": name})


def module_getattr(module: str) -> Callable[[str], NoReturn]:
    """A module-level ``__getattr__`` refusing every attribute the module does not define."""

    def __getattr__(name: str) -> NoReturn:
        if name.startswith("__") and name.endswith("__"):
            # Import machinery and tools probe dunders (__path__, __wrapped__...): absent.
            raise AttributeError(name)
        _refuse(f"{module}.{name}")

    return __getattr__
