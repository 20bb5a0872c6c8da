"""A small GGUF header reader: metadata values without loading weights.

The walk over the key/value pairs is ``header``; this module asks it for the keys
wanted, and caches the results per path, modification time and size.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from .format import ARRAY, ARRAY_HEAD, MAX_NAME_LENGTH, SIZES, U32, U64, GGUFError, mapped
from .header import Header, hop_strings, token_texts
from .vocab import (
    INFO_KEYS,
    TOKEN_TYPES_KEY,
    TOKENS_KEY,
    SpecialTexts,
    TokenizerInfo,
    special_token_ids,
    special_type_ids,
    tokenizer_info,
)

__all__ = [
    "GGUFError",
    "SpecialTexts",
    "TokenizerInfo",
    "clear_cache",
    "file_problem",
    "read_metadata",
    "read_special_texts",
    "read_tokenizer_info",
]

# What was read from each file, per path, modification time, size and reading.
_cache: dict[tuple[str, int, int, Hashable], Any] = {}
_cache_lock = threading.Lock()
T = TypeVar("T")


def _cached(path: str | os.PathLike[str], reading: Hashable, read: Callable[[mmap.mmap], T]) -> T:
    """``read`` of the mapped file, once per file version (path, mtime, size)."""
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_mtime_ns, stat.st_size, reading)
    with _cache_lock:
        if key in _cache:
            return _cache[key]  # type: ignore[no-any-return]
    with mapped(path) as view:
        value = read(view)
    with _cache_lock:
        _cache[key] = value
    return value


def read_metadata(path: str | os.PathLike[str], keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` found in the file's header (missing keys are left out).

    A key ending in ``*`` matches any key with that prefix (e.g. ``"*.context_length"``
    is written as the suffix ``.context_length`` after a leading ``*``).
    """
    wanted = frozenset(keys)
    found = _cached(path, ("metadata", wanted), lambda view: Header(view, wanted).scan()[0])
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

    def read(view: mmap.mmap) -> TokenizerInfo:
        found, arrays = Header(view, INFO_KEYS, record=frozenset({TOKENS_KEY})).scan()
        bos, eos = token_texts(view, arrays.get(TOKENS_KEY), special_token_ids(found))
        return tokenizer_info(found, bos, eos)

    return _cached(path, "tokenizer", read)


def read_special_texts(path: str | os.PathLike[str]) -> SpecialTexts:
    """The texts of the vocabulary's special tokens (see ``SpecialTexts``).

    Reads the token type array (four bytes a token) and decodes only the texts of the
    special tokens (17 of SmolLM2's 49,152, 6,414 of Gemma 3's 262,144); cached per path,
    modification time and size.
    """

    def read(view: mmap.mmap) -> SpecialTexts:
        arrays = Header(view, frozenset(), record=frozenset({TOKENS_KEY})).scan()[1]
        tokens = arrays.get(TOKENS_KEY)
        return _special_texts(view, tokens) if tokens is not None else SpecialTexts((), ())

    return _cached(path, "special texts", read)


def _special_texts(view: mmap.mmap, tokens: tuple[int, int]) -> SpecialTexts:
    start, count = tokens
    end = hop_strings(view, start, count)
    types = _types_after(view, end, count)
    if types is None:
        # not where converters put it: let the full header walk decode it
        types = Header(view, frozenset({TOKEN_TYPES_KEY})).scan()[0].get(TOKEN_TYPES_KEY)
    control_ids, user_ids = special_type_ids(types)
    texts = token_texts(view, tokens, tuple(control_ids + user_ids))
    control, user_defined = texts[: len(control_ids)], texts[len(control_ids) :]
    return SpecialTexts(
        control=tuple(t for t in control if t),
        user_defined=tuple(t for t in user_defined if t),
    )


_INT32 = 5  # the GGUF value type of the type array's items
# How many key/value pairs after the vocabulary are looked at for the type array:
# converters write it right after the tokens (BPE) or after the scores (SentencePiece).
_TYPES_SEARCH_PAIRS = 4


def _types_after(view: mmap.mmap, offset: int, count: int) -> memoryview | bytes | None:
    """The token type array when it is among the pairs right after the vocabulary, as
    its raw little-endian int32 bytes; None when it is not there."""
    for _ in range(_TYPES_SEARCH_PAIRS):
        (key_length,) = U64.unpack_from(view, offset)
        if key_length > MAX_NAME_LENGTH:
            return None
        key = view[offset + 8 : offset + 8 + key_length]
        offset += 8 + key_length
        (value_type,) = U32.unpack_from(view, offset)
        offset += 4
        if value_type != ARRAY:
            return None
        item_type, length = ARRAY_HEAD.unpack_from(view, offset)
        offset += 12
        if item_type not in SIZES:
            return None
        size = length * SIZES[item_type]
        if offset + size > len(view):
            return None
        if key == TOKEN_TYPES_KEY.encode():
            if item_type != _INT32 or length != count:
                return None
            return view[offset : offset + size]
        offset += size
    return None


def clear_cache() -> None:
    """Forget every cached header (for tests and for files rewritten in place)."""
    with _cache_lock:
        _cache.clear()
