"""Values that record what a template does with them, for the capability probes.

llama.cpp's engine keeps usage statistics on every value (``stats.used`` and
``stats.ops`` in ``common/jinja/value.h``) that ``caps_get`` in ``common/jinja/caps.cpp``
reads after a probe rendering. These stand-ins record the same events in jinja2:
reading a message's content, indexing or iterating it, testing it with ``is string``,
passing it to ``selectattr`` or ``tojson``. For the tool probes, ``UseDict`` records
which parts of a whole conversation (messages and tools) were read, by path.
"""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.filters


class Probe:
    """What a probe rendering did with one value: read it, and which operations."""

    def __init__(self) -> None:
        self.used = False
        self.ops: set[str] = set()


class ProbeMessage(dict[str, Any]):
    """A message that notes when its content is read."""

    def __init__(self, data: dict[str, Any], probe: Probe) -> None:
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


class ProbeStr(str):
    """String content that notes being indexed or iterated like a list of parts."""

    probe: Probe

    def __getitem__(self, key: Any) -> str:
        if isinstance(key, int):
            self.probe.ops.add("array_access")
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        # llama.cpp's engine cannot loop over a string: the template fails there.
        self.probe.ops.add("array_access")
        raise TypeError("cannot iterate over string content")


class ProbeList(list[Any]):
    """Typed (list) content that notes being indexed or iterated."""

    probe: Probe

    def __getitem__(self, key: Any) -> Any:
        self.probe.ops.add("array_access")
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        self.probe.ops.add("array_access")
        return super().__iter__()


class Uses:
    """The paths (``messages.1.tool_calls``) of the values a probe rendering read."""

    def __init__(self) -> None:
        self.paths: set[str] = set()


class UseDict(dict[str, Any]):
    """An object of a probe input that records, in ``Uses``, each of its values read.

    llama.cpp marks a value used when a member access returns it, when ``tojson``
    serialises it, and when a loop variable bound to it is read; reading a key (as an
    attribute, an item or with ``get``) and iterating ``items()``/``values()`` stand for
    those here.
    """

    __slots__ = ("_path", "_uses")

    def __init__(self, data: dict[str, Any], uses: Uses, path: str) -> None:
        super().__init__(
            {key: tracked(value, uses, f"{path}.{key}") for key, value in data.items()}
        )
        self._uses = uses
        self._path = path

    def _read(self, key: object) -> None:
        self._uses.paths.add(self._path)
        if isinstance(key, str) and dict.__contains__(self, key):
            self._uses.paths.add(f"{self._path}.{key}")

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._read(key)
        return super().get(key, default)

    def items(self) -> Any:
        for key in dict.keys(self):
            self._read(key)
        return super().items()

    def values(self) -> Any:
        for key in dict.keys(self):
            self._read(key)
        return super().values()

    def mark_all(self) -> None:
        self._uses.paths.add(self._path)
        for key, value in dict.items(self):
            self._uses.paths.add(f"{self._path}.{key}")
            mark_used_deep(value)


def tracked(value: Any, uses: Uses, path: str) -> Any:
    """``value`` with every object in it a UseDict reporting to ``uses`` under ``path``."""
    if isinstance(value, dict):
        return UseDict(value, uses, path)
    if isinstance(value, list):
        return [tracked(item, uses, f"{path}.{i}") for i, item in enumerate(value)]
    return value


def _note(value: Any, op: str) -> None:
    probe = getattr(value, "probe", None) if isinstance(value, (ProbeStr, ProbeList)) else None
    if probe is not None:
        probe.ops.add(op)


def is_string(value: Any) -> bool:
    _note(value, "test_is_string")
    return isinstance(value, str)


@jinja2.pass_context
def selectattr(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    _note(value, "selectattr")
    return jinja2.filters.sync_do_selectattr(context, value, *args, **kwargs)


def mark_used_deep(value: Any) -> None:
    # llama.cpp's tojson marks everything it serialises as used
    if isinstance(value, ProbeMessage):
        value.probe.used = True
    if isinstance(value, UseDict):
        value.mark_all()
    elif isinstance(value, dict):
        for item in value.values():
            mark_used_deep(item)
    elif isinstance(value, list):
        for item in value:
            mark_used_deep(item)
