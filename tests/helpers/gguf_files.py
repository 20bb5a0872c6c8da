"""Minimal GGUF files written for tests (header and one tiny tensor, no real weights)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, pairs: list[tuple[str, int, Any]]) -> None:
    """A minimal GGUF v3 file: the given key/values and one 4-float tensor."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 1, len(pairs)))
    for key, value_type, value in pairs:
        out += gguf_string(key) + struct.pack("<I", value_type)
        if value_type == 8:
            out += gguf_string(value)
        elif value_type == 9:
            out += struct.pack("<IQ", 8, len(value)) + b"".join(gguf_string(v) for v in value)
        else:
            out += struct.pack({4: "<I", 7: "<?"}[value_type], value)
    out += gguf_string("weight") + struct.pack("<IQIQ", 1, 4, 0, 0)
    out += b"\x00" * (-len(out) % 32) + b"\x00" * 16
    path.write_bytes(bytes(out))
