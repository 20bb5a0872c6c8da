"""Reply assembly on its own: UTF-8, echo and banner removal, stops, whitespace."""

from __future__ import annotations

from jazzmine.local.reply import OutputShape, ReplyAssembler


def feed_all(assembler: ReplyAssembler, chunks: list[bytes]) -> list[str]:
    pieces: list[str] = []
    for chunk in chunks:
        pieces += assembler.feed(chunk)
        if assembler.done:
            break
    return pieces + assembler.finish()


def test_multibyte_character_split_across_reads_is_never_split() -> None:
    text = "café 東京 🎉".encode()
    chunks = [text[i : i + 1] for i in range(len(text))]
    pieces = feed_all(ReplyAssembler(OutputShape()), chunks)
    assert "".join(pieces) == "café 東京 🎉"
    assert all("\ufffd" not in piece for piece in pieces)


def test_invalid_utf8_becomes_replacement_characters() -> None:
    pieces = feed_all(ReplyAssembler(OutputShape()), [b"ok \xff\xfe done"])
    assert "".join(pieces) == "ok \ufffd\ufffd done"


def test_stop_sequence_split_across_chunks_cuts_the_reply() -> None:
    assembler = ReplyAssembler(OutputShape(), stop_sequences=("\nUser:",))
    pieces = feed_all(assembler, [b"Hello there", b"\nUs", b"er: more", b" text"])
    assert "".join(pieces) == "Hello there"
    assert assembler.finish_reason == "stop"
    assert assembler.stopped_by == "\nUser:"


def test_text_that_only_looks_like_a_stop_prefix_is_released() -> None:
    assembler = ReplyAssembler(OutputShape(), stop_sequences=("\nUser:",))
    pieces = feed_all(assembler, [b"a\nU", b"nder the sea"])
    assert "".join(pieces) == "a\nUnder the sea"
    assert assembler.finish_reason is None


def test_echo_and_end_marker_are_removed() -> None:
    shape = OutputShape(echo="User: hi\nAssistant: ", end_markers=(" [end of text]",))
    pieces = feed_all(
        ReplyAssembler(shape), [b"User: hi\nAssis", b"tant: Hello!", b" [end of text]\n\n"]
    )
    assert "".join(pieces) == "Hello!"


def test_output_that_is_not_the_echo_is_kept_whole() -> None:
    shape = OutputShape(echo="User: hi\nAssistant: ")
    pieces = feed_all(ReplyAssembler(shape), [b"User: hello", b" world"])
    assert "".join(pieces) == "User: hello world"


def test_banner_preamble_and_trailer_are_removed() -> None:
    shape = OutputShape(preamble_end="\n> prompt\n", trailer_markers=("\n\nExiting...",))
    assembler = ReplyAssembler(shape)
    pieces = feed_all(
        assembler, [b"logo\nbuild: 1\n\n> prompt\n", b" the reply", b"\n\n\nExiting...\n"]
    )
    assert "".join(pieces) == "the reply"
    assert assembler.finish_reason is None  # chrome, not a stop: the caller decides


def test_stream_strips_whitespace_exactly_like_the_joined_reply() -> None:
    chunks = [b"  ", b"\n", b"word", b" ", b"\n", b"next", b"  \n", b"\n"]
    pieces = feed_all(ReplyAssembler(OutputShape()), chunks)
    assert "".join(pieces) == "word \nnext"
    assert pieces[0] == "word"


def test_a_reply_that_opens_with_a_new_turn_is_empty() -> None:
    assembler = ReplyAssembler(OutputShape(), stop_sequences=("\nUser:",))
    assert feed_all(assembler, [b"\n", b"User: hi again"]) == []
    assert assembler.stopped_by == "\nUser:" and assembler.reply_text == ""


def test_unfinished_chrome_is_still_cut_at_trailers() -> None:
    shape = OutputShape(preamble_end="\n> never printed\n", trailer_markers=("\n\nExiting...",))
    pieces = feed_all(ReplyAssembler(shape), [b"some text", b"\n\nExiting...\n"])
    assert "".join(pieces) == "some text"
