"""What a model's tokenizer settings say about BOS and EOS, and where the file says it.

Mirrors the defaults ``llama_vocab::impl::load`` in llama.cpp's ``src/llama-vocab.cpp``
falls back on when a GGUF file leaves a setting out: the special token ids by tokenizer
model, and whether BOS/EOS are added when a prompt is tokenized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# the header keys the tokenizer settings are read from
INFO_KEYS = frozenset(
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
    return TokenizerInfo(
        chat_template=template if isinstance(template, str) else None,
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
