"""Stepping over a large string array by guessing where it ends.

The vocabulary (``tokenizer.ggml.tokens``, 262144 strings for Gemma 3) and BPE merges
are stored as length-prefixed strings, so finding where such an array ends means
hopping over every length, which costs tens of milliseconds in Python. Instead, the
header reader in ``gguf/header.py`` guesses where the next key starts (searching for the byte
pattern of a key name such as ``<u64 length>tokenizer.``) and accepts the guess only
when everything after it parses as a GGUF header: the remaining key/value pairs
(exactly as many as the header announces) and the tensor-info table, with every tensor
offset inside the file. A wrong guess inside the array would have to fake that entire
tail, which real vocabularies do not do; when no guess passes, the reader falls back to
hopping over every length.

llama.cpp reads every string, so the guessing has no counterpart there; the checks on
the tensor-info table follow the ones ``gguf_init_from_file_impl`` in
``ggml/src/gguf.cpp`` makes (rank at most ``GGML_MAX_DIMS``, a known type, positive
dimensions).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator

from .format import MAX_NAME_LENGTH, U32, U64, GGUFError

# Below this many items an exact hop is already cheap, so no guessing is worth it.
GUESS_MIN_ITEMS = 4096
# A guess is abandoned after this many candidates; the exact hop is then the cheaper way.
_MAX_CANDIDATES = 64
_HIGH_ZEROS = b"\x00" * 7
# ggml limits used to reject a tail that only looks like a tensor-info table
_MAX_DIMS = 4
_MAX_GGML_TYPE = 255


def candidates(view: mmap.mmap, lowest: int, anchors: tuple[bytes, ...]) -> Iterator[int]:
    """Offsets at or past ``lowest`` where a key named ``<anchor>...`` could start.

    ``anchors`` are key namespaces, most likely first.
    """
    tried = 0
    for anchor in anchors:
        needle = _HIGH_ZEROS + anchor
        position = lowest + 1
        while tried < _MAX_CANDIDATES:
            hit = view.find(needle, position)
            if hit < 0:
                break
            tried += 1
            yield hit - 1  # the key length's low byte sits just before its zeros
            position = hit + 1


def check_tensor_infos(view: mmap.mmap, offset: int, n_tensors: int) -> None:
    """Raise GGUFError unless ``n_tensors`` plausible tensor infos start at ``offset``."""
    size = len(view)
    for _ in range(n_tensors):
        (name_length,) = U64.unpack_from(view, offset)
        if not 0 < name_length <= MAX_NAME_LENGTH:
            raise GGUFError("implausible tensor name")
        offset += 8 + name_length
        (n_dims,) = U32.unpack_from(view, offset)
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
