"""The GGUF header reader on hostile input: it fails with GGUFError or reads, nothing else.

A model path comes from the user, so the header reader sees whatever file it is given:
truncated downloads, other formats, or bytes made to hurt. Hypothesis writes headers whose
length and count fields lie (near 2**64, or 2**63 and up, which a signed reader takes
as negative), nested arrays, unknown value types, invalid UTF-8 in keys and values,
known keys holding the wrong type, and valid files cut short or with bytes overwritten.
Every read must end in a GGUFError or a normal return, within a small memory budget
(nothing is allocated by a length field the file cannot back) and in well under a second.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.gguf_files import gguf_string, write_gguf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jazzmine.local.gguf import reader as gguf

# Fields a corrupt or crafted file is likely to hold: small, sign-bit and all-ones values.
EDGE_U64 = (
    0,
    1,
    2,
    4095,
    4096,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**62,
    2**63 - 1,
    2**63,  # -2**63 read as signed
    2**64 - 12,
    2**64 - 8,
    2**64 - 1,  # -1 read as signed
)
# Value type ids: the twelve scalars, string (8), array (9), and unknown ones.
KNOWN_TYPES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# The keys the readers decode, so wrong types and lying lengths reach the decoding paths.
KNOWN_KEYS = (
    "general.architecture",
    "toy.context_length",
    "tokenizer.chat_template",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
)
# The key sets read: as the package reads them (file_problem, the context length), then
# every known key, then every key at all, so every value gets decoded.
AS_USED = (["general.architecture"], ["*.context_length", "general.architecture"])
WANTED = (*AS_USED, list(KNOWN_KEYS), ["*"])
# Reading a file of a few kilobytes must not need more than this (tracemalloc peak).
MEMORY_BUDGET = 4 * 1024 * 1024

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=1),
    derandomize=True,
    database=None,  # derandomized: nothing to remember between runs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u64 = st.one_of(st.sampled_from(EDGE_U64), st.integers(0, 2**64 - 1), st.integers(0, 40))
u32 = st.one_of(st.sampled_from((0, 1, 8, 9, 13, 255, 2**31, 2**32 - 1)), st.integers(0, 2**32 - 1))
text_bytes = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.binary(max_size=12),  # mostly invalid UTF-8
    st.sampled_from((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"<s>", b"")),
)


@st.composite
def strings(draw: st.DrawFn) -> bytes:
    """A length-prefixed string whose length field may lie."""
    raw = draw(text_bytes)
    length = draw(st.one_of(st.just(len(raw)), u64))
    return struct.pack("<Q", length) + raw


@st.composite
def values(draw: st.DrawFn, value_type: int, depth: int = 0) -> bytes:
    """The encoding of one value of ``value_type``, honest or not."""
    if value_type in SCALAR_SIZES:
        return draw(st.binary(min_size=SCALAR_SIZES[value_type], max_size=SCALAR_SIZES[value_type]))
    if value_type == 8:
        return draw(strings())
    if value_type == 9:
        # arrays of anything, arrays of arrays included, nesting kept shallow here
        # (deep nesting has its own test)
        item_type = draw(st.sampled_from(KNOWN_TYPES) if depth < 3 else st.sampled_from((4, 8)))
        items = draw(st.lists(values(item_type, depth + 1), max_size=4))
        count = draw(st.one_of(st.just(len(items)), u64))
        return struct.pack("<IQ", item_type, count) + b"".join(items)
    return draw(st.binary(max_size=16))  # an unknown type: whatever follows


@st.composite
def pairs(draw: st.DrawFn) -> bytes:
    key = draw(st.one_of(st.sampled_from(KNOWN_KEYS).map(str.encode), text_bytes))
    key_length = draw(st.one_of(st.just(len(key)), st.just(len(key)), u64))
    value_type = draw(st.one_of(st.sampled_from(KNOWN_TYPES), u32))
    return (
        struct.pack("<Q", key_length) + key + struct.pack("<I", value_type)
        + draw(values(value_type))
    )  # fmt: skip


@st.composite
def tensor_infos(draw: st.DrawFn) -> bytes:
    name = draw(text_bytes)
    dims = draw(st.lists(u64, max_size=5))
    n_dims = draw(st.one_of(st.just(len(dims)), u32))
    return (
        struct.pack("<Q", len(name)) + name + struct.pack("<I", n_dims)
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", draw(u32), draw(u64))
    )  # fmt: skip


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    """A whole file: header, pairs and tensor infos, each field possibly a lie."""
    kv = draw(st.lists(pairs(), max_size=8))
    infos = draw(st.lists(tensor_infos(), max_size=3))
    out = draw(st.sampled_from((b"GGUF", b"GGUF", b"GGUF", b"GGML", b"GGU", b"")))
    out += struct.pack("<I", draw(st.sampled_from((3, 3, 2, 1, 0, 2**32 - 1))))
    out += struct.pack("<Q", draw(st.one_of(st.just(len(infos)), u64)))
    out += struct.pack("<Q", draw(st.one_of(st.just(len(kv)), st.just(len(kv)), u64)))
    out += b"".join(kv) + b"".join(infos)
    out += draw(st.binary(max_size=64))
    return out[: draw(st.integers(0, len(out)))] if draw(st.booleans()) else out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf-fuzz")


def read_everything(path: Path, key_sets: tuple[list[str], ...] = WANTED) -> Iterator[str]:
    """Every public read of ``path``; yields what each one did ("ok" or "GGUFError").

    Anything else (another exception type) propagates and fails the test.
    """
    gguf.clear_cache()  # a rewritten file can keep its size and mtime; read it afresh
    problem = gguf.file_problem(str(path))
    assert problem is None or "GGUF" in problem
    yield "ok" if problem is None else "problem"
    for keys in key_sets:
        try:
            gguf.read_metadata(path, keys)
            yield "ok"
        except gguf.GGUFError:
            yield "GGUFError"
    try:
        info = gguf.read_tokenizer_info(path)
    except gguf.GGUFError:
        yield "GGUFError"
    else:
        assert info.chat_template is None or isinstance(info.chat_template, str)
        assert isinstance(info.bos_token, str) and isinstance(info.eos_token, str)
        yield "ok"


def read_within_budget(path: Path, key_sets: tuple[list[str], ...] = WANTED) -> list[str]:
    """read_everything, failing when it needs more than MEMORY_BUDGET at once."""
    tracemalloc.start()
    try:
        outcomes = list(read_everything(path, key_sets))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert peak < MEMORY_BUDGET, f"reading a {size}-byte file took {peak} bytes"
    return outcomes


@FUZZ
@given(data=gguf_files())
def test_any_header_is_read_or_refused_with_gguf_error(workdir: Path, data: bytes) -> None:
    path = workdir / "fuzz.gguf"
    path.write_bytes(data)
    read_within_budget(path)


@FUZZ
@given(item_type=st.sampled_from((4, 8, 9, 13)), depth=st.integers(1, 5000))
def test_deeply_nested_arrays_are_refused_or_read(
    workdir: Path, item_type: int, depth: int
) -> None:
    # an array of an array of ... (depth levels), wanted by read_metadata and skipped by
    # read_tokenizer_info; recursion must not run out of stack
    value = struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", item_type, 0)
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    out += gguf_string("general.architecture") + struct.pack("<I", 9) + value
    path = workdir / "nested.gguf"
    path.write_bytes(out)
    read_within_budget(path)


def _valid_file(path: Path, vocabulary: int) -> bytes:
    tokens = [f"tok{i}".encode() for i in range(vocabulary)]
    write_gguf(
        path,
        [
            ("general.architecture", 8, "toy"),
            ("toy.context_length", 4, 4096),
            ("tokenizer.ggml.model", 8, "gpt2"),
            ("tokenizer.ggml.tokens", 9, tokens),
            ("tokenizer.ggml.merges", 9, [b"t o"] * vocabulary),
            ("tokenizer.ggml.bos_token_id", 4, 1),
            ("tokenizer.ggml.eos_token_id", 4, vocabulary - 1),
            ("tokenizer.ggml.add_bos_token", 7, True),
            ("tokenizer.chat_template", 8, "{{ messages[0].content }}"),
        ],
    )
    return path.read_bytes()


def test_a_valid_file_cut_at_every_offset(workdir: Path) -> None:
    path = workdir / "cut.gguf"
    whole = _valid_file(path, 8)
    gguf.clear_cache()
    assert gguf.read_tokenizer_info(path).chat_template == "{{ messages[0].content }}"
    assert gguf.read_metadata(path, ["*.context_length"]) == {"toy.context_length": 4096}
    complete = 0
    tracemalloc.start()
    try:
        for end in range(len(whole)):
            path.write_bytes(whole[:end])
            outcomes = list(read_everything(path))
            complete += outcomes == ["ok"] * len(outcomes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BUDGET
    # a cut inside the header never reads as a whole header
    header_end = whole.index(b"weight") - 8
    assert complete <= len(whole) - header_end


# A vocabulary large enough that the reader guesses where it ends (gguf_guess.py).
LARGE = 4200


@pytest.fixture(scope="module")
def large_file(workdir: Path) -> bytes:
    path = workdir / "large.gguf"
    data = _valid_file(path, LARGE)
    # intact, it reads exactly, through the guessed ends of both large arrays
    gguf.clear_cache()
    info = gguf.read_tokenizer_info(path)
    assert (info.bos_token, info.eos_token) == ("tok1", f"tok{LARGE - 1}")
    assert info.chat_template == "{{ messages[0].content }}"
    return data


@settings(FUZZ, max_examples=40)
@given(cut=st.floats(0, 1))
def test_a_file_with_a_large_vocabulary_cut_anywhere(
    workdir: Path, large_file: bytes, cut: float
) -> None:
    path = workdir / "large-cut.gguf"
    path.write_bytes(large_file[: int(cut * len(large_file))])
    read_within_budget(path, AS_USED)


@settings(FUZZ, max_examples=80)
@given(
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.one_of(st.sampled_from(EDGE_U64), st.integers(0, 255))),
        min_size=1,
        max_size=4,
    )
)
def test_a_valid_file_with_fields_overwritten(
    workdir: Path, large_file: bytes, edits: list[tuple[float, int]]
) -> None:
    # an overwritten length, count or type anywhere: inside the vocabulary, where the
    # guessed end would be, or in the tensor infos the guess is checked against
    data = bytearray(large_file)
    for where, value in edits:
        at = int(where * (len(data) - 8))
        data[at : at + 8] = struct.pack("<Q", value)
    path = workdir / "large-edit.gguf"
    path.write_bytes(bytes(data))
    read_within_budget(path, AS_USED)


def test_wrong_types_for_known_keys_read_as_missing(workdir: Path) -> None:
    path = workdir / "types.gguf"
    write_gguf(
        path,
        [
            ("tokenizer.chat_template", 4, 7),
            ("tokenizer.ggml.model", 9, [b"llama"]),
            ("tokenizer.ggml.tokens", 9, [b"<unk>", b"<s>"]),
            ("tokenizer.ggml.bos_token_id", 4, 2**32 - 1),
            ("tokenizer.ggml.eos_token_id", 8, "2"),
        ],
    )
    gguf.clear_cache()
    info = gguf.read_tokenizer_info(path)
    assert (info.chat_template, info.bos_token, info.eos_token) == (None, "", "")


@settings(FUZZ, max_examples=8)
@given(
    tokens=st.integers(4096, 9000),
    anchor=st.sampled_from(("tokenizer.x", "general.y")),
    claimed=st.sampled_from((4096, 5000, 2**20)),
)
def test_a_vocabulary_of_fake_keys_is_not_guessed_through_forever(
    workdir: Path, tokens: int, anchor: str, claimed: int
) -> None:
    # Every token looks like the start of a key holding another large string array, so
    # each guessed end of the vocabulary leads to another guess inside it: the reader
    # must give up guessing (and walk the array) rather than try every combination.
    fake = gguf_string(anchor) + struct.pack("<IIQ", 9, 8, claimed)
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40)
    out += gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, tokens)
    out += gguf_string(fake) * tokens
    path = workdir / "fake-keys.gguf"
    path.write_bytes(out)
    outcomes = read_within_budget(path, AS_USED)
    assert outcomes.count("ok") == 0  # the header announces 2**40 pairs it does not hold
