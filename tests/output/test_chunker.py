"""The UTF-8 chunker (ccxd.output.chunker): reads in, whole-character chunks out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxd.output.chunker import Utf8Chunker, complete_length

PROPERTY = settings(max_examples=200, deadline=None)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (taken modulo its length), as a pipe might deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def run(chunker: Utf8Chunker, reads: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for read in reads:
        out += chunker.feed(read)
        assert chunker.pending <= 3  # never more than an incomplete character is held back
    return out + chunker.flush()


@PROPERTY
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=30), st.integers(4, 100))
def test_any_bytes_reassemble_exactly_in_chunks_no_larger_than_max(
    data: bytes, cuts: list[int], max_chunk: int
) -> None:
    chunks = run(Utf8Chunker(max_chunk), split_at(data, cuts))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= max_chunk for c in chunks)


@PROPERTY
@given(st.text(max_size=1000), st.lists(st.integers(min_value=0), max_size=30), st.integers(4, 64))
def test_every_chunk_of_utf8_output_is_valid_utf8(text: str, cuts: list[int], max_chunk: int) -> None:
    data = text.encode("utf-8")
    chunks = run(Utf8Chunker(max_chunk), split_at(data, cuts))
    assert b"".join(chunks) == data
    for c in chunks:
        assert 0 < len(c) <= max_chunk
        c.decode("utf-8")  # raises if a character was split


@PROPERTY
@given(
    st.text(alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), min_size=1, max_size=300),
    st.integers(4, 16),
)
def test_multibyte_text_in_one_read_is_split_only_between_characters(text: str, max_chunk: int) -> None:
    chunker = Utf8Chunker(max_chunk)
    chunks = chunker.feed(text.encode("utf-8"))
    assert chunker.flush() == []
    assert "".join(c.decode("utf-8") for c in chunks) == text
    # Only a 3-byte step back is ever needed, so chunks stay close to the maximum.
    assert all(len(c) > max_chunk - 4 for c in chunks[:-1])


def test_a_read_ending_inside_a_character_holds_the_tail_back() -> None:
    chunker = Utf8Chunker()
    assert chunker.feed(b"caf\xc3") == [b"caf"]
    assert chunker.pending == 1
    assert chunker.feed(b"\xa9 ok") == [b"\xc3\xa9 ok"]
    assert chunker.pending == 0


def test_a_character_split_over_three_reads_comes_out_whole() -> None:
    chunker = Utf8Chunker()
    euro_and_emoji = "€😀".encode()  # 3 + 4 bytes
    assert chunker.feed(euro_and_emoji[:1]) == []
    assert chunker.feed(euro_and_emoji[1:4]) == [b"\xe2\x82\xac"]
    assert chunker.feed(euro_and_emoji[4:6]) == []
    assert chunker.pending == 3
    assert chunker.feed(euro_and_emoji[6:]) == ["😀".encode()]


def test_flush_returns_an_incomplete_tail_as_is() -> None:
    chunker = Utf8Chunker()
    assert chunker.feed(b"abc\xf0\x9f") == [b"abc"]
    assert chunker.flush() == [b"\xf0\x9f"]
    assert chunker.flush() == []
    assert chunker.pending == 0


def test_bytes_that_are_not_utf8_pass_through_unchanged() -> None:
    chunker = Utf8Chunker(8)
    data = b"\xff\xfe\x80\x80\x80\x80\x80\x80\x80\x80\x00"
    assert b"".join(chunker.feed(data) + chunker.flush()) == data


def test_large_reads_are_cut_at_max_chunk() -> None:
    chunker = Utf8Chunker(4096)
    chunks = chunker.feed(b"x" * 10_000)
    assert [len(c) for c in chunks] == [4096, 4096, 1808]


def test_max_chunk_must_hold_a_whole_character() -> None:
    with pytest.raises(ValueError, match="whole UTF-8 character"):
        Utf8Chunker(3)
    Utf8Chunker(4)


@pytest.mark.parametrize(
    ("buf", "expected"),
    [
        (b"", 0),
        (b"abc", 3),
        (b"a\xc3", 1),
        (b"a\xc3\xa9", 3),
        (b"\xe2\x82", 0),
        (b"\xf0\x9f\x98", 0),
        (b"\xf0\x9f\x98\x80", 4),
        (b"\x80\x80\x80\x80", 4),  # no lead byte in reach: not UTF-8, nothing to wait for
        (b"a\xff", 2),
    ],
)
def test_complete_length(buf: bytes, expected: int) -> None:
    assert complete_length(buf) == expected
