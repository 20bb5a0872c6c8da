"""What a model's tokenizer settings say about BOS and EOS, and where the file says it.

Mirrors the defaults ``llama_vocab::impl::load`` in llama.cpp's ``src/llama-vocab.cpp``
falls back on when a GGUF file leaves a setting out: the special token ids by tokenizer
model, and whether BOS/EOS are added when a prompt is tokenized.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# the header keys the tokenizer settings are read from
INFO_KEYS = frozenset(
    {
        "tokenizer.chat_template",
        "tokenizer.chat_template.tool_use",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
    }
)
# the vocabulary: a string array whose place is recorded, never decoded whole
TOKENS_KEY = b"tokenizer.ggml.tokens"

# BPE vocabularies add BOS only for these pre-tokenizers.
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
    # the model's tool-use variant (tokenizer.chat_template.tool_use), when it has one
    chat_template_tool_use: str | None = None


def special_token_ids(found: Mapping[str, Any]) -> tuple[object, object]:
    """The BOS and EOS ids (as stored, so not always ints) from header values ``found``."""
    default_bos, default_eos, _, _ = _defaults(found)
    return (
        found.get("tokenizer.ggml.bos_token_id", default_bos),
        found.get("tokenizer.ggml.eos_token_id", default_eos),
    )


def tokenizer_info(found: Mapping[str, Any], bos: str, eos: str) -> TokenizerInfo:
    """The TokenizerInfo for header values ``found`` and the BOS/EOS token texts."""
    _, _, add_bos, add_eos = _defaults(found)
    template = found.get("tokenizer.chat_template")
    tool_use = found.get("tokenizer.chat_template.tool_use")
    return TokenizerInfo(
        chat_template=template if isinstance(template, str) else None,
        chat_template_tool_use=tool_use if isinstance(tool_use, str) else None,
        bos_token=bos,
        eos_token=eos,
        add_bos=bool(found.get("tokenizer.ggml.add_bos_token", add_bos)),
        add_eos=bool(found.get("tokenizer.ggml.add_eos_token", add_eos)),
    )


def _defaults(found: Mapping[str, Any]) -> tuple[int | None, int | None, bool, bool]:
    """(BOS id, EOS id, add BOS, add EOS) for the file's tokenizer model."""
    model = str(found.get("tokenizer.ggml.model", "llama"))
    pre = str(found.get("tokenizer.ggml.pre", ""))
    return _vocab_defaults(model, pre)


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


# ---------- the texts llama.cpp turns into special tokens ----------

# the per-token type array (llama_token_type values, int32)
TOKEN_TYPES_KEY = "tokenizer.ggml.token_type"
TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED = 2, 3, 4
# llama_vocab::impl::tokenizer_st_partition matches CONTROL, USER_DEFINED and UNKNOWN
# tokens in a prompt's text; with parse_special=false it skips CONTROL and UNKNOWN. Those
# two are what prompt text can forge: USER_DEFINED ones are matched in any text, the way
# Hugging Face matches its non-special added tokens (Gemma 3's "\n\n", runs of spaces,
# "<table>"), so they are how the model reads ordinary text.
PARSE_SPECIAL_TYPES = frozenset({TYPE_UNKNOWN, TYPE_CONTROL})
# Texts llama_vocab::impl::load makes CONTROL whatever type the file gives them (its
# EOT, EOM, FIM and end-of-generation detection by name): in a file that marks one of
# them NORMAL, the prompt text still becomes the control token.
PROMOTED_TO_CONTROL = frozenset(
    {
        # end of turn / generation
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<｜end▁of▁sentence｜>",
        "<end_of_utterance>",
        "<|eom_id|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<|tool_response>",
        "<turn|>",
        "<eos>",
        "[e~[",
        # fill-in-the-middle
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
        "<|fim_pad|>",
        "<fim-pad>",
        "<fim_pad>",
        "<PAD>",
        "[PAD]",
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
        "<|file_sep|>",
    }
)


@dataclass(frozen=True)
class SpecialTexts:
    """The texts of a vocabulary's special tokens, by how llama.cpp matches them.

    ``control``: matched only when a prompt is tokenized with parse_special (CONTROL and
    UNKNOWN tokens, and the names llama.cpp promotes to CONTROL); ``user_defined``:
    matched in any text.
    """

    control: tuple[str, ...]
    user_defined: tuple[str, ...]


def special_type_ids(types: object) -> tuple[list[int], list[int]]:
    """(ids of parse_special-only tokens, ids of USER_DEFINED tokens) from the type
    array: decoded (a list) or its raw little-endian int32 bytes."""
    if isinstance(types, (bytes, bytearray, memoryview)):
        return _ids_from_raw(bytes(types))
    control: list[int] = []
    user_defined: list[int] = []
    if not isinstance(types, list):
        return control, user_defined  # no types: llama.cpp treats every token as NORMAL
    for token_id, kind in enumerate(types):
        if kind in PARSE_SPECIAL_TYPES:
            control.append(token_id)
        elif kind == TYPE_USER_DEFINED:
            user_defined.append(token_id)
    return control, user_defined


def _ids_from_raw(raw: bytes) -> tuple[list[int], list[int]]:
    low = raw[0::4]
    if len(low) * 4 != len(raw) or raw[1::4].count(0) + raw[2::4].count(0) + raw[3::4].count(
        0
    ) != 3 * len(low):
        # a type past 255 (or a negative one): no such type exists, decode it all
        return special_type_ids(list(array_of_int32(raw)))
    # every type fits its low byte: a byte search finds the few special ones at C speed
    control = [m.start() for m in _PARSE_SPECIAL_BYTES.finditer(low)]
    user_defined = [m.start() for m in _USER_DEFINED_BYTES.finditer(low)]
    return control, user_defined


def array_of_int32(raw: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(raw) // 4}i", raw[: len(raw) // 4 * 4])


_PARSE_SPECIAL_BYTES = re.compile(
    b"[" + b"".join(re.escape(bytes([t])) for t in sorted(PARSE_SPECIAL_TYPES)) + b"]"
)
_USER_DEFINED_BYTES = re.compile(re.escape(bytes([TYPE_USER_DEFINED])))
