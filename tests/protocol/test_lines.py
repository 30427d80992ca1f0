"""The line splitter behind cc_executor's one ``process.output`` per line."""

from __future__ import annotations

import random

import pytest

from ccxd.protocol.lines import LINE_LIMIT, LineSplitter


def feed_all(splitter: LineSplitter, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    tail = splitter.flush()
    return out + ([tail] if tail else [])


def test_chunks_that_cut_lines_anywhere_come_out_as_whole_lines() -> None:
    text = b"".join(b"%d\n" % i for i in range(1, 20001))
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(text)), 300))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    lines = feed_all(LineSplitter(), chunks)
    assert lines == [b"%d\n" % i for i in range(1, 20001)]


def test_a_partial_line_is_held_until_its_newline_and_the_tail_flushed_at_the_end() -> None:
    s = LineSplitter()
    assert s.feed(b"one\ntw") == [b"one\n"]
    assert s.held == 2
    assert s.feed(b"o") == []
    assert s.feed(b"\nthree") == [b"two\n"]
    assert s.flush() == b"three"
    assert s.flush() == b"" and s.held == 0


def test_empty_lines_and_carriage_returns_are_lines_of_their_own_kind() -> None:
    # Only "\n" ends a line, as readline does: "\r" progress bars stay in their line.
    assert feed_all(LineSplitter(), [b"\n\na\rb\r\n"]) == [b"\n", b"\n", b"a\rb\r\n"]


def test_a_long_line_is_cut_at_the_limit_and_rejoins_exactly() -> None:
    line = bytes(random.Random(1).choice(b"abcdefgh") for _ in range(200 * 1024)) + b"\n"
    pieces = feed_all(LineSplitter(), [line[i : i + 4096] for i in range(0, len(line), 4096)])
    assert [len(p) for p in pieces] == [LINE_LIMIT, LINE_LIMIT, LINE_LIMIT, 200 * 1024 - 3 * LINE_LIMIT + 1]
    assert b"".join(pieces) == line


def test_a_line_of_exactly_the_limit_is_one_piece() -> None:
    s = LineSplitter(limit=8)
    assert s.feed(b"1234567\n") == [b"1234567\n"]
    assert s.feed(b"12345678") == []  # could still be a whole line of 8 ... or more
    assert s.feed(b"\n") == [b"12345678", b"\n"]


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_a_cut_never_splits_a_utf8_sequence(char: str) -> None:
    encoded = char.encode()
    for lead in range(8):  # every alignment of the characters against the limit
        line = b"x" * lead + encoded * 40 + b"\n"
        for step in (1, 3, 7, len(line)):
            pieces = feed_all(LineSplitter(limit=16), [line[i : i + step] for i in range(0, len(line), step)])
            assert b"".join(pieces) == line
            assert all(len(p) <= 16 for p in pieces)
            assert "".join(p.decode("utf-8") for p in pieces) == line.decode()  # each piece decodes alone


def test_bytes_that_are_not_utf8_are_still_cut_at_the_limit() -> None:
    line = b"\x80" * 40 + b"\n"
    pieces = feed_all(LineSplitter(limit=16), [line])
    assert [len(p) for p in pieces] == [16, 16, 9] and b"".join(pieces) == line


def test_memory_held_never_exceeds_the_limit() -> None:
    s = LineSplitter(limit=1024)
    for _ in range(100):
        s.feed(b"y" * 1000)
        assert s.held <= 1024
