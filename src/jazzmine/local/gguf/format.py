"""The GGUF file layout: value type ids and sizes, fixed-size fields, and the error type.

Mirrors the type table of llama.cpp's ``ggml/src/gguf.cpp`` (``GGUF_TYPE_SIZE``) and
the magic and version checks of ``gguf_init_from_file_impl``; the readers in
``gguf/header.py`` and ``gguf/guess.py`` share these so they agree on every size.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator

MAGIC = b"GGUF"
# type id -> struct format of one scalar
SCALARS = {
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
SIZES = {t: struct.calcsize(f) for t, f in SCALARS.items()}
STRING, ARRAY = 8, 9
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
ARRAY_HEAD = struct.Struct("<IQ")
# a key or tensor name longer than this is taken as corruption, not as a name
MAX_NAME_LENGTH = 65535


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


@contextlib.contextmanager
def malformed_as_gguf_error() -> Iterator[None]:
    """A short, empty or corrupt file is a GGUFError, whatever part of parsing notices."""
    try:
        yield
    except GGUFError:
        raise
    except (ValueError, struct.error, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise GGUFError(f"malformed GGUF file: {exc}") from exc


@contextlib.contextmanager
def mapped(path: str | os.PathLike[str]) -> Iterator[mmap.mmap]:
    """The file mapped read-only; any parse error inside the block is a GGUFError."""
    with (
        malformed_as_gguf_error(),
        open(path, "rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        yield view
