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


def write_vocab(
    path: Path, tokens: list[str], types: list[int] | None, *, scores_between: bool, late: bool
) -> None:
    """A GGUF header with a vocabulary and its type array (or none), and one tensor."""
    pairs: list[bytes] = [
        gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    ]

    def array(key: str, item_type: int, items: bytes, count: int) -> bytes:
        return gguf_string(key) + struct.pack("<IIQ", 9, item_type, count) + items

    pairs.append(
        array("tokenizer.ggml.tokens", 8, b"".join(gguf_string(t) for t in tokens), len(tokens))
    )
    typed = (
        array("tokenizer.ggml.token_type", 5, struct.pack(f"<{len(types)}i", *types), len(types))
        if types is not None
        else b""
    )
    if scores_between:
        pairs.append(
            array(
                "tokenizer.ggml.scores",
                6,
                struct.pack(f"<{len(tokens)}f", *([0.0] * len(tokens))),
                len(tokens),
            )
        )
    filler = [
        gguf_string(f"custom.key{i}") + struct.pack("<I", 4) + struct.pack("<I", i)
        for i in range(6)
    ]
    pairs += [*filler, typed] if late else [typed, *filler]
    pairs = [p for p in pairs if p]
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 1, len(pairs)) + b"".join(pairs))
    out += gguf_string("weight") + struct.pack("<IQIQ", 1, 4, 0, 0)
    out += b"\x00" * (-len(out) % 32) + b"\x00" * 16
    path.write_bytes(bytes(out))
