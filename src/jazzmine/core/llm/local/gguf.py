"""A small GGUF header reader: metadata values without loading weights.

It reads key/value pairs in file order and stops as soon as it has the keys asked for,
stepping over arrays without decoding them where it can. Results are cached per path and
modification time.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections.abc import Iterable
from typing import Any

_MAGIC = b"GGUF"
# type id -> struct format of one scalar
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

_cache: dict[tuple[str, int, int, frozenset[str]], dict[str, Any]] = {}
_cache_lock = threading.Lock()


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


def read_metadata(path: str | os.PathLike[str], keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` found in the file's header (missing keys are left out).

    A key ending in ``*`` matches any key with that prefix (e.g. ``"*.context_length"``
    is written as the suffix ``.context_length`` after a leading ``*``).
    """
    wanted = frozenset(keys)
    stat = os.stat(path)
    cache_key = (os.fspath(path), stat.st_mtime_ns, stat.st_size, wanted)
    with _cache_lock:
        if cache_key in _cache:
            return dict(_cache[cache_key])
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        found = _scan(view, wanted)
    with _cache_lock:
        _cache[cache_key] = found
    return dict(found)


def _matches(key: str, wanted: frozenset[str]) -> bool:
    if key in wanted:
        return True
    return any(w.startswith("*") and key.endswith(w[1:]) for w in wanted)


def _scan(view: mmap.mmap, wanted: frozenset[str]) -> dict[str, Any]:
    if view[:4] != _MAGIC:
        raise GGUFError("not a GGUF file (bad magic)")
    (version,) = struct.unpack_from("<I", view, 4)
    if version < 2:
        raise GGUFError(f"GGUF version {version} is too old")
    (count,) = struct.unpack_from("<Q", view, 16)
    offset = 24
    found: dict[str, Any] = {}
    exact = {w for w in wanted if not w.startswith("*")}
    for _ in range(count):
        key, offset = _read_string(view, offset)
        (value_type,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if _matches(key, wanted):
            found[key], offset = _read_value(view, offset, value_type)
            if exact <= found.keys() and len(exact) == len(wanted):
                break
        else:
            offset = _skip_value(view, offset, value_type)
    return found


def _read_string(view: mmap.mmap, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", view, offset)
    start = offset + 8
    return view[start : start + length].decode("utf-8", errors="replace"), start + length


def _read_value(view: mmap.mmap, offset: int, value_type: int) -> tuple[Any, int]:
    if value_type == _STRING:
        return _read_string(view, offset)
    if value_type == _ARRAY:
        item_type, length = struct.unpack_from("<IQ", view, offset)
        offset += 12
        items = []
        for _ in range(length):
            item, offset = _read_value(view, offset, item_type)
            items.append(item)
        return items, offset
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return struct.unpack_from(fmt, view, offset)[0], offset + struct.calcsize(fmt)


def _skip_value(view: mmap.mmap, offset: int, value_type: int) -> int:
    if value_type == _STRING:
        (length,) = struct.unpack_from("<Q", view, offset)
        return offset + 8 + int(length)
    if value_type == _ARRAY:
        item_type, length = struct.unpack_from("<IQ", view, offset)
        offset += 12
        fmt = _SCALARS.get(item_type)
        if fmt is not None:
            return offset + int(length) * struct.calcsize(fmt)
        for _ in range(length):
            offset = _skip_value(view, offset, item_type)
        return offset
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return offset + struct.calcsize(fmt)
