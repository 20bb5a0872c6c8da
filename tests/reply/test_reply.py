"""Reply assembly on its own: UTF-8, echo and banner removal, stops, whitespace."""

from __future__ import annotations

from jazzmine.local.reply.assembler import ECHO_SEARCH_CHARS, ReplyAssembler
from jazzmine.local.request import OutputShape


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


# ---------- one answer per input (issue #13): what llama-server would give ----------
# llama-completion's own shape: an end marker when the model ends the reply, then an
# empty line ("\n\n") whatever ended it.
COMPLETION = OutputShape(end_markers=(" [end of text]",), closing="\n\n", marks_every_end=True)


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def test_the_closing_empty_line_is_never_a_stop() -> None:
    for chunks in ([b"Paris", b"\n", b"\n"], [b"Paris\n\n"], one_byte_at_a_time(b"Paris\n\n")):
        assembler = ReplyAssembler(COMPLETION, stop_sequences=("\n",))
        assert "".join(feed_all(assembler, chunks)) == "Paris"
        assert assembler.finish_reason is None and assembler.stopped_by is None
        assert assembler.raw_text == "Paris\n\n"


def test_a_newline_of_the_model_before_the_closing_is_still_a_stop() -> None:
    assembler = ReplyAssembler(COMPLETION, stop_sequences=("\n",))
    assert "".join(feed_all(assembler, [b"Paris\n", b"\n\n"])) == "Paris"
    assert assembler.finish_reason == "stop" and assembler.stopped_by == "\n"


def test_a_newline_that_is_not_the_closing_is_released() -> None:
    assembler = ReplyAssembler(COMPLETION)
    assert "".join(feed_all(assembler, [b"one\n", b"\ntwo", b"\n\n"])) == "one\n\ntwo"


def test_a_partial_stop_at_the_end_of_a_cut_reply_is_dropped() -> None:
    assembler = ReplyAssembler(COMPLETION, stop_sequences=("la Marseillaise!",))
    assert "".join(feed_all(assembler, [b"L'\xc3\x89toile, la", b"\n\n"])) == "L'Étoile,"
    assert assembler.finish_reason is None and assembler.stopped_by is None


def test_a_partial_stop_before_the_models_own_end_is_kept() -> None:
    # llama-server sends what it held back when the model ends the reply.
    assembler = ReplyAssembler(COMPLETION, stop_sequences=("la Marseillaise!",))
    pieces = feed_all(assembler, [b"L'\xc3\x89toile, la", b" [end of text]\n", b"\n\n"])
    assert "".join(pieces) == "L'Étoile, la"
    assert assembler.finish_reason == "stop" and assembler.stopped_by is None


def test_a_partial_stop_is_kept_when_a_cut_cannot_be_told() -> None:
    # Warm text has been cut by llama-server already; a -p binary marks no end.
    assembler = ReplyAssembler(OutputShape(), stop_sequences=("la Marseillaise!",))
    assert "".join(feed_all(assembler, [b"L'toile, la"])) == "L'toile, la"


def test_a_character_cut_at_the_end_is_dropped_not_replaced() -> None:
    data = "晴崖".encode() + "范".encode()[:2]
    for chunks in ([data + b"\n\n"], one_byte_at_a_time(data + b"\n\n")):
        assembler = ReplyAssembler(COMPLETION)
        assert "".join(feed_all(assembler, chunks)) == "晴崖"
        assert assembler.raw_text == "晴崖\ufffd\n\n"
    # Also with no closing at all (warm never sends it; a -p binary may end so).
    assert "".join(feed_all(ReplyAssembler(OutputShape()), [data])) == "晴崖"


def test_the_stop_complete_first_wins_however_the_reads_are_cut() -> None:
    data = "L'Étoile, la".encode()
    for chunks in ([data], one_byte_at_a_time(data)):
        assembler = ReplyAssembler(OutputShape(), stop_sequences=("L'É", "'"))
        assert "".join(feed_all(assembler, chunks)) == "L"
        assert assembler.stopped_by == "'"


def test_a_stop_inside_the_end_marker_is_not_a_stop() -> None:
    data = b"Paris. [end of text]\n\n\n"
    for chunks in ([data], one_byte_at_a_time(data)):
        assembler = ReplyAssembler(COMPLETION, stop_sequences=(" ", "["))
        assert "".join(feed_all(assembler, chunks)) == "Paris."
        assert assembler.finish_reason == "stop" and assembler.stopped_by is None


def test_a_stop_that_only_looked_like_the_end_marker_is_found() -> None:
    assembler = ReplyAssembler(COMPLETION, stop_sequences=("[1",))
    assert "".join(feed_all(assembler, [b"see [", b"1] and", b"\n\n"])) == "see"
    assert assembler.stopped_by == "[1"


def test_a_stop_held_by_chrome_still_arriving_is_never_half_released() -> None:
    for tail in (b"1] c", b"end of text]\n"):
        assembler = ReplyAssembler(COMPLETION, stop_sequences=("b [",))
        text = "".join(feed_all(assembler, [b"ab [", tail, b"\n\n"]))
        if tail.startswith(b"1"):
            assert (text, assembler.stopped_by) == ("a", "b [")
        else:  # it was the end marker after all: the model's text is whole
            assert (text, assembler.stopped_by) == ("ab", None)


def test_chrome_trailers_are_not_stops_either() -> None:
    shape = OutputShape(trailer_markers=("\n\n\nExiting...",))
    assembler = ReplyAssembler(shape, stop_sequences=("\n",))
    assert "".join(feed_all(assembler, [b"Paris", b"\n\n\nExiting...\n"])) == "Paris"
    assert assembler.finish_reason is None and assembler.stopped_by is None


# ---------- echo removal verifies ----------
PROMPT = "User: hi\nAssistant:"


def echo_run(chunks: list[bytes], prompt: str = PROMPT) -> tuple[str, ReplyAssembler]:
    assembler = ReplyAssembler(OutputShape(echo=prompt))
    return "".join(feed_all(assembler, chunks)), assembler


def test_an_exact_echo_is_removed() -> None:
    text, assembler = echo_run(one_byte_at_a_time(PROMPT.encode() + b" Hello!"))
    assert text == "Hello!" and assembler.echo == "removed"


def test_an_echo_after_whitespace_llama_cpp_adds_is_removed() -> None:
    text, assembler = echo_run([b" " + PROMPT.encode() + b" Hello!"])
    assert text == "Hello!" and assembler.echo == "removed"


def test_an_echo_after_a_log_line_is_removed_where_it_stands() -> None:
    # The log line is kept (the binary's output is, when no echo is found); the echo goes.
    output = "loading model... done\n" + PROMPT + " Hello!"
    for chunks in ([output.encode()], one_byte_at_a_time(output.encode())):
        text, assembler = echo_run(chunks)
        assert text == "loading model... done\nHello!" and assembler.echo == "removed"


def test_the_echoed_prompts_own_turn_markers_never_end_the_reply() -> None:
    # A -p binary that logs a line before echoing the flat prompt: its "\nUser:" once cut
    # the reply to the log line, and the model's words were lost.
    prompt = "User: What colour is the sky?\nAssistant: "
    output = f"loading model... done\n{prompt}Blue, mostly.\nUser: and at night?"
    for chunks in ([output.encode()], one_byte_at_a_time(output.encode())):
        assembler = ReplyAssembler(OutputShape(echo=prompt), stop_sequences=("\nUser:",))
        text = "".join(feed_all(assembler, chunks))
        assert text == "loading model... done\nBlue, mostly."
        assert assembler.stopped_by == "\nUser:" and assembler.echo == "removed"


def test_a_late_echo_is_held_only_while_it_may_be_arriving() -> None:
    assembler = ReplyAssembler(OutputShape(echo=PROMPT), stop_sequences=("\nUser:",))
    assert assembler.feed(b"loading\nUser: h") == ["loading"]
    # Not the echo after all: the stop it holds ends the reply.
    assert assembler.feed(b"ello") == [] and assembler.done
    assert assembler.stopped_by == "\nUser:" and assembler.echo == "not found"


def test_an_echo_cut_short_by_the_end_of_output_is_not_an_echo() -> None:
    text, assembler = echo_run([b"loading\n" + PROMPT[:8].encode()])
    assert text == "loading\n" + PROMPT[:8] and assembler.echo == "not found"


def test_the_echo_is_looked_for_only_in_the_first_part_of_the_output() -> None:
    far = "x" * ECHO_SEARCH_CHARS + "\n" + PROMPT + " Hello!"
    text, assembler = echo_run([far.encode()])
    assert text == far and assembler.echo == "not found"


def test_an_echo_with_one_extra_space_keeps_the_output_whole() -> None:
    output = PROMPT.replace("hi", "hi ") + " Hello!"
    text, assembler = echo_run(one_byte_at_a_time(output.encode()))
    assert text == output and assembler.echo == "not found"


def test_no_echo_keeps_the_output_whole() -> None:
    text, assembler = echo_run([b"Hello!"])
    assert text == "Hello!" and assembler.echo == "not found"


def test_output_shorter_than_the_echo_is_kept_whole() -> None:
    text, assembler = echo_run([PROMPT[:5].encode()])
    assert text == PROMPT[:5].strip() and assembler.echo == "not found"


def test_the_echo_check_holds_back_no_more_than_it_must() -> None:
    assembler = ReplyAssembler(OutputShape(echo=PROMPT))
    # A difference shows at the first byte: the reply streams at once.
    assert assembler.feed(b"Hello there") == ["Hello there"]
    whitespace = ReplyAssembler(OutputShape(echo=PROMPT))
    # Whitespace alone could precede the echo, but not without end.
    assert whitespace.feed(b" " * 64 + b"Hello") == ["Hello"]
    assert whitespace.echo == "not found"


def test_without_an_echo_in_the_shape_there_is_no_verdict() -> None:
    assembler = ReplyAssembler(OutputShape())
    feed_all(assembler, [b"Hello"])
    assert assembler.echo is None
