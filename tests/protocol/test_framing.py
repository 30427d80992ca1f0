"""Newline framing with a size limit (ccxd.protocol.framing)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ccxd.protocol.framing import LineFramer, TooLarge


def feed_all(framer: LineFramer, pieces: list[bytes]) -> list[bytes | TooLarge]:
    out: list[bytes | TooLarge] = []
    for piece in pieces:
        out += framer.feed(piece)
        assert framer.buffered <= framer.limit
    return out


def test_lines_split_across_feeds_are_joined() -> None:
    f = LineFramer(100)
    assert f.feed(b'{"jsonrpc":') == []
    assert f.buffered == 11
    assert f.feed(b'"2.0"') == []
    assert f.feed(b"}\n{") == [b'{"jsonrpc":"2.0"}']
    assert f.buffered == 1
    assert f.feed(b"}\n") == [b"{}"]
    assert f.buffered == 0


def test_several_lines_in_one_feed_come_out_in_order() -> None:
    assert LineFramer(100).feed(b"[1]\n[2]\n[3]\n") == [b"[1]", b"[2]", b"[3]"]


def test_crlf_is_accepted() -> None:
    f = LineFramer(100)
    assert f.feed(b"[1]\r\n[2]\r") == [b"[1]"]
    assert f.feed(b"\n") == [b"[2]"]


def test_blank_and_whitespace_only_lines_are_skipped() -> None:
    assert LineFramer(100).feed(b"\n\r\n   \n\t\n[1]\n\n") == [b"[1]"]


def test_a_line_without_newline_waits() -> None:
    f = LineFramer(100)
    assert f.feed(b"[1]") == []
    assert f.buffered == 3


def test_a_line_of_exactly_the_limit_is_accepted() -> None:
    f = LineFramer(10)
    assert f.feed(b"0123456789\n") == [b"0123456789"]
    assert f.feed(b"01234") == []
    assert f.feed(b"56789\n") == [b"0123456789"]


def test_a_too_large_line_in_one_feed_is_reported_once_and_the_next_line_survives() -> None:
    f = LineFramer(10)
    out = f.feed(b"0123456789A\n[1]\n")
    assert len(out) == 2
    assert isinstance(out[0], TooLarge) and out[0].limit == 10
    assert out[1] == b"[1]"
    assert f.buffered == 0


def test_a_too_large_line_over_many_feeds_is_reported_once_and_never_buffered() -> None:
    f = LineFramer(10)
    first = f.feed(b"x" * 7)
    assert first == [] and f.buffered == 7
    second = f.feed(b"x" * 7)  # now known to be too long: reported at once, before its newline
    assert len(second) == 1 and isinstance(second[0], TooLarge)
    assert f.buffered == 0
    for _ in range(1000):
        assert f.feed(b"y" * 4096) == []
        assert f.buffered == 0
    assert f.feed(b"tail\n[2]\n") == [b"[2]"]  # the rest of the long line is dropped, not parsed


def test_a_too_large_line_reported_at_its_newline_is_not_reported_again() -> None:
    f = LineFramer(10)
    assert f.feed(b"012345678") == []
    out = f.feed(b"9AB\n")
    assert len(out) == 1 and isinstance(out[0], TooLarge)
    assert f.feed(b"[1]\n") == [b"[1]"]


def test_too_large_repr_names_the_limit() -> None:
    assert repr(TooLarge(1048576)) == "TooLarge(limit=1048576)"


# -- property: any stream, any split ------------------------------------------------------


lines = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        st.sampled_from([b"", b"  ", b"\r", b"[1]\r", b"x" * 16, b"y" * 17, b"z" * 60]),
    ),
    max_size=12,
)


def expected_items(stream_lines: list[bytes], limit: int) -> list[bytes | type[TooLarge]]:
    out: list[bytes | type[TooLarge]] = []
    for line in stream_lines:
        if len(line) > limit:
            out.append(TooLarge)
        elif line.strip():
            out.append(line.rstrip(b"\r"))
    return out


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.integers(min_value=0), max_size=20), st.integers(1, 20))
def test_any_stream_split_anywhere_gives_the_same_messages(
    stream_lines: list[bytes], cuts: list[int], limit: int
) -> None:
    data = b"".join(line + b"\n" for line in stream_lines)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    framer = LineFramer(limit)
    got = feed_all(framer, pieces)
    normalised = [TooLarge if isinstance(item, TooLarge) else item for item in got]
    assert normalised == expected_items(stream_lines, limit)
    assert framer.buffered == 0
