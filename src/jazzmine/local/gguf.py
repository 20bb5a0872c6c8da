"""A small GGUF header reader: metadata values without loading weights.

The walk over the key/value pairs is ``gguf_header``; this module asks it for the keys
wanted, and caches the results per path, modification time and size.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from .gguf_format import GGUFError, mapped
from .gguf_header import Header, token_texts
from .gguf_vocab import INFO_KEYS, TOKENS_KEY, TokenizerInfo, special_token_ids, tokenizer_info

__all__ = [
    "GGUFError",
    "TokenizerInfo",
    "clear_cache",
    "file_problem",
    "read_metadata",
    "read_tokenizer_info",
]

_cache: dict[tuple[str, int, int, frozenset[str]], dict[str, Any]] = {}
_info_cache: dict[tuple[str, int, int], TokenizerInfo] = {}
_cache_lock = threading.Lock()


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
    with mapped(path) as view:
        found = Header(view, wanted).scan()[0]
    with _cache_lock:
        _cache[cache_key] = found
    return dict(found)


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be a model file, or None when its header reads as GGUF."""
    if not os.path.exists(path):
        return f"the model file {path} does not exist"
    if not os.path.isfile(path):
        return f"the model path {path} is not a file"
    try:
        read_metadata(path, ["general.architecture"])
    except GGUFError as error:
        return f"the model file {path} is not a usable GGUF file ({error})"
    except OSError as error:
        return f"the model file {path} cannot be read ({error.strerror or error})"
    return None


def read_tokenizer_info(path: str | os.PathLike[str]) -> TokenizerInfo:
    """The chat template and the BOS/EOS token texts, without reading the vocabulary.

    Only the two token strings are decoded; the vocabulary itself is stepped over.
    """
    stat = os.stat(path)
    cache_key = (os.fspath(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _info_cache.get(cache_key)
    if cached is not None:
        return cached
    with mapped(path) as view:
        found, arrays = Header(view, INFO_KEYS, record=frozenset({TOKENS_KEY})).scan()
        bos, eos = token_texts(view, arrays.get(TOKENS_KEY), special_token_ids(found))
    info = tokenizer_info(found, bos, eos)
    with _cache_lock:
        _info_cache[cache_key] = info
    return info


def clear_cache() -> None:
    """Forget every cached header (for tests and for files rewritten in place)."""
    with _cache_lock:
        _cache.clear()
        _info_cache.clear()
