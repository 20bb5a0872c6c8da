"""A small GGUF header reader: metadata values without loading weights.

It reads key/value pairs in file order, stepping over arrays without decoding them.
Results are cached per path, modification time and size.

String arrays are the slow part: the vocabulary (``tokenizer.ggml.tokens``, 262144
strings for Gemma 3) and BPE merges are stored as length-prefixed strings, so finding
where such an array ends means hopping over every length, which costs tens of
milliseconds in Python. Instead, a large string array is stepped over by *guessing*
where the next key starts (searching for the byte pattern of a key name such as
``<u64 length>tokenizer.``) and accepting the guess only when everything after it
parses as a GGUF header: the remaining key/value pairs (exactly as many as the header
announces) and the tensor-info table, with every tensor offset inside the file. A wrong
guess inside the array would have to fake that entire tail, which real vocabularies do
not do; when no guess passes, the reader falls back to hopping over every length.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
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
_SIZES = {t: struct.calcsize(f) for t, f in _SCALARS.items()}
_STRING, _ARRAY = 8, 9
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARRAY_HEAD = struct.Struct("<IQ")

# Below this many items an exact hop is already cheap, so no guessing is worth it.
_GUESS_MIN_ITEMS = 4096
# A guess is abandoned after this many candidates; the exact hop is then the cheaper way.
_MAX_CANDIDATES = 64
# Key namespaces searched for after a large string array, most likely first.
_ANCHORS = (b"tokenizer.", b"general.")
_HIGH_ZEROS = b"\x00" * 7
# ggml limits used to reject a tail that only looks like a tensor-info table
_MAX_DIMS = 4
_MAX_GGML_TYPE = 255

_cache: dict[tuple[str, int, int, frozenset[str]], dict[str, Any]] = {}
_info_cache: dict[tuple[str, int, int], TokenizerInfo] = {}
_cache_lock = threading.Lock()


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


@dataclass(frozen=True)
class TokenizerInfo:
    """What rendering a chat prompt needs from a model file.

    ``bos_token``/``eos_token`` are the token texts ("" when the vocabulary has none);
    ``add_bos``/``add_eos`` say whether llama.cpp adds them when tokenizing a prompt.
    """

    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    add_eos: bool


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
    with (
        _malformed_as_gguf_error(),
        open(path, "rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        found = _Header(view, wanted).scan()[0]
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


_INFO_KEYS = frozenset(
    {
        "tokenizer.chat_template",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
    }
)
_TOKENS_KEY = b"tokenizer.ggml.tokens"


@contextlib.contextmanager
def _malformed_as_gguf_error() -> Iterator[None]:
    """A short, empty or corrupt file is a GGUFError, whatever part of parsing notices."""
    try:
        yield
    except GGUFError:
        raise
    except (ValueError, struct.error, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise GGUFError(f"malformed GGUF file: {exc}") from exc


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
    with (
        _malformed_as_gguf_error(),
        open(path, "rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        found, arrays = _Header(view, _INFO_KEYS, record=frozenset({_TOKENS_KEY})).scan()
        tokens = arrays.get(_TOKENS_KEY)
        model = str(found.get("tokenizer.ggml.model", "llama"))
        pre = str(found.get("tokenizer.ggml.pre", ""))
        default_bos, default_eos, add_bos, add_eos = _vocab_defaults(model, pre)
        bos_id = found.get("tokenizer.ggml.bos_token_id", default_bos)
        eos_id = found.get("tokenizer.ggml.eos_token_id", default_eos)
        bos, eos = _token_texts(view, tokens, (bos_id, eos_id))
    template = found.get("tokenizer.chat_template")
    info = TokenizerInfo(
        chat_template=template if isinstance(template, str) else None,
        bos_token=bos,
        eos_token=eos,
        add_bos=bool(found.get("tokenizer.ggml.add_bos_token", add_bos)),
        add_eos=bool(found.get("tokenizer.ggml.add_eos_token", add_eos)),
    )
    with _cache_lock:
        _info_cache[cache_key] = info
    return info


def clear_cache() -> None:
    """Forget every cached header (for tests and for files rewritten in place)."""
    with _cache_lock:
        _cache.clear()
        _info_cache.clear()


# llama-vocab.cpp picks these when the file does not say: special token ids by tokenizer
# model, and whether BOS/EOS are added (BPE vocabularies add BOS only for some
# pre-tokenizers).
_BPE_ADD_BOS = frozenset(
    {
        "llama3",
        "llama-v3",
        "llama-bpe",
        "falcon3",
        "falcon-h1",
        "pixtral",
        "midm-2.0",
        "lfm2",
        "jina-v5-nano",
        "tekken",
        "chameleon",
    }
)


def _vocab_defaults(model: str, pre: str) -> tuple[int | None, int | None, bool, bool]:
    if model == "llama":
        return 1, 2, True, False
    if model == "bert":
        return 101, None, True, False
    if model in ("gpt2", "hybriddna", "whitespace"):
        return 11, 11, pre in _BPE_ADD_BOS, False
    if model == "gemma4":
        return 11, 11, True, False
    if model == "t5":
        return None, 1, False, True
    if model == "plamo2":
        return 1, 2, False, False
    return None, None, False, False


def _token_texts(
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
        offset = _hop_strings(view, offset, token_id - at)
        at = token_id
        texts[slot] = _read_string(view, offset)[0]
    return tuple(texts)


def _decode(raw: bytes) -> str:
    # The one place header bytes become text, so a test can prove the vocabulary is
    # never decoded by counting calls here.
    return raw.decode("utf-8", errors="replace")


def _read_string(view: mmap.mmap, offset: int) -> tuple[str, int]:
    (length,) = _U64.unpack_from(view, offset)
    start = offset + 8
    end = start + length
    if end > len(view):
        raise GGUFError("string runs past the end of the file")
    return _decode(view[start:end]), end


def _hop_strings(view: mmap.mmap, offset: int, count: int) -> int:
    """The offset just past ``count`` length-prefixed strings starting at ``offset``."""
    unpack = _U64.unpack_from
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


def _read_value(view: mmap.mmap, offset: int, value_type: int) -> tuple[Any, int]:
    if value_type == _STRING:
        return _read_string(view, offset)
    if value_type == _ARRAY:
        item_type, length = _ARRAY_HEAD.unpack_from(view, offset)
        offset += 12
        if length > len(view):
            raise GGUFError("array longer than the file")
        items = []
        for _ in range(length):
            item, offset = _read_value(view, offset, item_type)
            items.append(item)
        return items, offset
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return struct.unpack_from(fmt, view, offset)[0], offset + _SIZES[value_type]


class _Header:
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

    def scan(self) -> tuple[dict[str, Any], dict[bytes, tuple[int, int]]]:
        view = self.view
        if view[:4] != _MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        (version,) = _U32.unpack_from(view, 4)
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
            (key_length,) = _U64.unpack_from(view, offset)
            if key_length > 65535:
                raise GGUFError("implausible key length")
            key = view[offset + 8 : offset + 8 + key_length]
            offset += 8 + key_length
            (value_type,) = _U32.unpack_from(view, offset)
            offset += 4
            if self._wants(key):
                found[_decode(key)], offset = _read_value(view, offset, value_type)
                if (
                    not speculative
                    and self.early_exit
                    and len(found) == len(self.exact)
                    and index + 1 < count
                ):
                    return found, arrays, offset
                continue
            if value_type != _ARRAY:
                if value_type == _STRING:
                    (length,) = _U64.unpack_from(view, offset)
                    offset += 8 + length
                elif value_type in _SIZES:
                    offset += _SIZES[value_type]
                else:
                    raise GGUFError(f"unknown GGUF value type {value_type}")
                continue
            item_type, length = _ARRAY_HEAD.unpack_from(view, offset)
            offset += 12
            if item_type in _SIZES:
                offset += length * _SIZES[item_type]
                continue
            if item_type != _STRING:
                # arrays of arrays are legal but never large in practice
                for _ in range(length):
                    offset = _skip_nested(view, offset, item_type)
                continue
            if length * 8 > len(view) - offset:
                raise GGUFError("string array longer than the file")
            if key in self.record:
                arrays[key] = (offset, length)
            remaining = count - index - 1
            if length >= _GUESS_MIN_ITEMS:
                guessed = self._guess_past(offset, length, remaining)
                if guessed is not None:
                    more_found, more_arrays, end = guessed
                    found.update(more_found)
                    arrays.update(more_arrays)
                    return found, arrays, end
                if speculative:
                    raise GGUFError("no plausible end for a string array")
            offset = _hop_strings(view, offset, length)
        if speculative:
            self._check_tensor_infos(offset)
        return found, arrays, offset

    def _guess_past(
        self, start: int, length: int, remaining: int
    ) -> tuple[dict[str, Any], dict[bytes, tuple[int, int]], int] | None:
        """Parse the rest of the header from a guessed end of a string array."""
        for candidate in self._candidates(start + 8 * length):
            try:
                return self._pairs(candidate, remaining, speculative=True)
            except (GGUFError, struct.error, UnicodeDecodeError, OverflowError):
                continue
        return None

    def _candidates(self, lowest: int) -> Iterator[int]:
        """Offsets at or past ``lowest`` where a key named ``<anchor>...`` could start."""
        view = self.view
        tried = 0
        for anchor in _ANCHORS:
            needle = _HIGH_ZEROS + anchor
            position = lowest + 1
            while tried < _MAX_CANDIDATES:
                hit = view.find(needle, position)
                if hit < 0:
                    break
                tried += 1
                yield hit - 1  # the key length's low byte sits just before its zeros
                position = hit + 1

    def _check_tensor_infos(self, offset: int) -> None:
        view = self.view
        size = len(view)
        for _ in range(self.n_tensors):
            (name_length,) = _U64.unpack_from(view, offset)
            if not 0 < name_length <= 65535:
                raise GGUFError("implausible tensor name")
            offset += 8 + name_length
            (n_dims,) = _U32.unpack_from(view, offset)
            if not 0 < n_dims <= _MAX_DIMS:
                raise GGUFError("implausible tensor rank")
            dims = struct.unpack_from(f"<{n_dims}Q", view, offset + 4)
            if not all(0 < d < 1 << 48 for d in dims):
                raise GGUFError("implausible tensor shape")
            offset += 4 + 8 * n_dims
            ggml_type, data_offset = struct.unpack_from("<IQ", view, offset)
            if ggml_type > _MAX_GGML_TYPE or data_offset >= size:
                raise GGUFError("implausible tensor type or offset")
            offset += 12
        if offset > size:
            raise GGUFError("tensor infos run past the end of the file")


def _skip_nested(view: mmap.mmap, offset: int, value_type: int) -> int:
    if value_type == _STRING:
        (length,) = _U64.unpack_from(view, offset)
        return offset + 8 + int(length)
    if value_type == _ARRAY:
        item_type, length = _ARRAY_HEAD.unpack_from(view, offset)
        offset += 12
        if item_type in _SIZES:
            return offset + int(length) * _SIZES[item_type]
        if item_type == _STRING:
            return _hop_strings(view, offset, length)
        for _ in range(length):
            offset = _skip_nested(view, offset, item_type)
        return offset
    size = _SIZES.get(value_type)
    if size is None:
        raise GGUFError(f"unknown GGUF value type {value_type}")
    return offset + size
