"""One pass over a GGUF file's key/value section, decoding only what is asked for.

It reads key/value pairs in file order, as ``gguf_init_from_file_impl`` in llama.cpp's
``ggml/src/gguf.cpp`` does, but decodes only the values asked for and steps over
arrays without decoding them (a large string array by a checked guess, see
``gguf/guess.py``). A string array it is asked to record (the vocabulary) is kept as
its place in the file, from which single strings are read later (``token_texts``).
"""

from __future__ import annotations

import mmap
import struct
from itertools import repeat
from typing import Any

from .format import (
    ARRAY,
    ARRAY_HEAD,
    MAGIC,
    MAX_NAME_LENGTH,
    SCALARS,
    SIZES,
    STRING,
    U32,
    U64,
    GGUFError,
)
from .guess import GUESS_MIN_ITEMS, candidates, check_tensor_infos

# Key namespaces searched for after a large string array, most likely first.
ANCHORS = (b"tokenizer.", b"general.")
# Arrays of arrays are read recursively; llama.cpp refuses them outright (gguf.cpp reads
# no nested array), so a modest depth is plenty, and a file nesting thousands of levels
# deep (12 bytes each) is refused before Python's recursion limit is reached.
_MAX_ARRAY_DEPTH = 32
# Guessed ends tried in one scan, all arrays together. A speculative parse can meet
# another large string array and guess again, so without one shared budget a vocabulary
# full of fake keys costs 64 ** depth parses (a 176 kB file ran for minutes). Real files
# need one guess per large array, the first candidate being right.
_MAX_GUESSES = 128


def token_texts(
    view: mmap.mmap, tokens: tuple[int, int] | None, token_ids: tuple[object, ...]
) -> tuple[str, ...]:
    """The texts of ``token_ids`` ("" for ids that are missing or out of range)."""
    texts = [""] * len(token_ids)
    if tokens is None:
        return tuple(texts)
    start, count = tokens
    wanted = sorted(
        (token_id, slot)
        for slot, token_id in enumerate(token_ids)
        if isinstance(token_id, int) and 0 <= token_id < count
    )
    # One walk in id order: both ids can sit deep in the vocabulary (Llama 3, Qwen).
    offset, at = start, 0
    for token_id, slot in wanted:
        offset = hop_strings(view, offset, token_id - at)
        at = token_id
        texts[slot] = read_string(view, offset)[0]
    return tuple(texts)


def decode(raw: bytes) -> str:
    # The one place header bytes become text, so a test can prove the vocabulary is
    # never decoded by counting calls here.
    return raw.decode("utf-8", errors="replace")


def read_string(view: mmap.mmap, offset: int) -> tuple[str, int]:
    (length,) = U64.unpack_from(view, offset)
    start = offset + 8
    end = start + length
    if end > len(view):
        raise GGUFError("string runs past the end of the file")
    return decode(view[start:end]), end


def hop_strings(view: mmap.mmap, offset: int, count: int) -> int:
    """The offset just past ``count`` length-prefixed strings starting at ``offset``."""
    unpack = U64.unpack_from
    try:
        # Unrolled by eight: the loop bookkeeping costs as much as the hop itself.
        for _ in repeat(None, count >> 3):
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
            offset += 8 + unpack(view, offset)[0]
        for _ in repeat(None, count & 7):
            offset += 8 + unpack(view, offset)[0]
    except struct.error as exc:
        raise GGUFError("string array runs past the end of the file") from exc
    if offset > len(view):
        raise GGUFError("string array runs past the end of the file")
    return offset


def _read_value(view: mmap.mmap, offset: int, value_type: int, depth: int = 0) -> tuple[Any, int]:
    if value_type == STRING:
        return read_string(view, offset)
    if value_type == ARRAY:
        if depth >= _MAX_ARRAY_DEPTH:
            raise GGUFError("arrays nested too deeply")
        item_type, length = ARRAY_HEAD.unpack_from(view, offset)
        offset += 12
        if length > len(view):
            raise GGUFError("array longer than the file")
        items = []
        for _ in range(length):
            item, offset = _read_value(view, offset, item_type, depth + 1)
            items.append(item)
        return items, offset
    fmt = SCALARS.get(value_type)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return struct.unpack_from(fmt, view, offset)[0], offset + SIZES[value_type]


class Header:
    """One pass over the key/value section of a mapped GGUF file."""

    def __init__(
        self,
        view: mmap.mmap,
        wanted: frozenset[str],
        *,
        record: frozenset[bytes] = frozenset(),
    ) -> None:
        self.view = view
        self.exact = frozenset(w.encode() for w in wanted if not w.startswith("*"))
        self.suffixes = tuple(w[1:].encode() for w in wanted if w.startswith("*"))
        self.record = record
        self.early_exit = not self.suffixes and not record
        self.guesses_left = _MAX_GUESSES

    def scan(self) -> tuple[dict[str, Any], dict[bytes, tuple[int, int]]]:
        view = self.view
        if view[:4] != MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        (version,) = U32.unpack_from(view, 4)
        if version < 2:
            raise GGUFError(f"GGUF version {version} is too old")
        self.n_tensors, count = struct.unpack_from("<QQ", view, 8)
        try:
            found, arrays, _ = self._pairs(24, count, speculative=False)
        except struct.error as exc:
            raise GGUFError("truncated GGUF header") from exc
        return found, arrays

    def _wants(self, key: bytes) -> bool:
        return key in self.exact or (bool(self.suffixes) and key.endswith(self.suffixes))

    def _pairs(
        self, offset: int, count: int, *, speculative: bool
    ) -> tuple[dict[str, Any], dict[bytes, tuple[int, int]], int]:
        """Parse ``count`` pairs from ``offset``: (values wanted, recorded arrays, end).

        ``speculative`` means ``offset`` is a guess: parse to the end of the header and
        check the tensor-info table, so a wrong guess raises instead of returning.
        """
        view = self.view
        found: dict[str, Any] = {}
        arrays: dict[bytes, tuple[int, int]] = {}
        for index in range(count):
            (key_length,) = U64.unpack_from(view, offset)
            if key_length > MAX_NAME_LENGTH:
                raise GGUFError("implausible key length")
            key = view[offset + 8 : offset + 8 + key_length]
            offset += 8 + key_length
            (value_type,) = U32.unpack_from(view, offset)
            offset += 4
            if self._wants(key):
                found[decode(key)], offset = _read_value(view, offset, value_type)
                if (
                    not speculative
                    and self.early_exit
                    and len(found) == len(self.exact)
                    and index + 1 < count
                ):
                    return found, arrays, offset
                continue
            if value_type != ARRAY:
                if value_type == STRING:
                    (length,) = U64.unpack_from(view, offset)
                    offset += 8 + length
                elif value_type in SIZES:
                    offset += SIZES[value_type]
                else:
                    raise GGUFError(f"unknown GGUF value type {value_type}")
                continue
            item_type, length = ARRAY_HEAD.unpack_from(view, offset)
            offset += 12
            if item_type in SIZES:
                offset += length * SIZES[item_type]
                continue
            if item_type != STRING:
                # arrays of arrays are legal but never large in practice
                for _ in range(length):
                    offset = _skip_nested(view, offset, item_type, 1)
                continue
            if length * 8 > len(view) - offset:
                raise GGUFError("string array longer than the file")
            if key in self.record:
                arrays[key] = (offset, length)
            remaining = count - index - 1
            if length >= GUESS_MIN_ITEMS:
                guessed = self._guess_past(offset, length, remaining)
                if guessed is not None:
                    more_found, more_arrays, end = guessed
                    found.update(more_found)
                    arrays.update(more_arrays)
                    return found, arrays, end
                if speculative:
                    raise GGUFError("no plausible end for a string array")
            offset = hop_strings(view, offset, length)
        if speculative:
            check_tensor_infos(view, offset, self.n_tensors)
        return found, arrays, offset

    def _guess_past(
        self, start: int, length: int, remaining: int
    ) -> tuple[dict[str, Any], dict[bytes, tuple[int, int]], int] | None:
        """Parse the rest of the header from a guessed end of a string array."""
        for candidate in candidates(self.view, start + 8 * length, ANCHORS):
            if self.guesses_left <= 0:
                break
            self.guesses_left -= 1
            try:
                return self._pairs(candidate, remaining, speculative=True)
            except (GGUFError, struct.error, UnicodeDecodeError, OverflowError):
                continue
        return None


def _skip_nested(view: mmap.mmap, offset: int, value_type: int, depth: int) -> int:
    if value_type == STRING:
        (length,) = U64.unpack_from(view, offset)
        return offset + 8 + int(length)
    if value_type == ARRAY:
        if depth >= _MAX_ARRAY_DEPTH:
            raise GGUFError("arrays nested too deeply")
        item_type, length = ARRAY_HEAD.unpack_from(view, offset)
        offset += 12
        if item_type in SIZES:
            return offset + int(length) * SIZES[item_type]
        if item_type == STRING:
            return hop_strings(view, offset, length)
        for _ in range(length):
            offset = _skip_nested(view, offset, item_type, depth + 1)
        return offset
    size = SIZES.get(value_type)
    if size is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return offset + size
