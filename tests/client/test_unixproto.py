"""The Unix socket's framing as the client reads it: lines and NUL-led binary frames (no I/O)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxd.client.unixproto import MessageReader, UnixProtocolError


def binary(frame: bytes) -> bytes:
    return struct.pack("<BI", 0, len(frame)) + frame


def read_all(reader: MessageReader, data: bytes, cuts: list[int]) -> list[tuple[bool, bytes]]:
    """Feed ``data`` in pieces cut at ``cuts``, the way the kernel fills the buffer."""
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        view = memoryview(data)[pos:cut]
        while view:
            room = reader.buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            view = view[n:]
            reader.received(n)
        pos = max(pos, cut)
    return [(is_bin, bytes(payload)) for is_bin, payload in reader.messages]


def test_lines_and_frames_come_out_in_order_whatever_the_pieces():
    frame = b"\x01\x00" + bytes(range(256)) * 3 + b"\n\n\x00"  # newlines and NULs inside a frame
    data = b'{"a":1}\n' + binary(frame) + b'{"b":2}\r\n\n' + binary(b"") + b'{"c":3}\n'
    want = [(False, b'{"a":1}'), (True, frame), (False, b'{"b":2}'), (True, b""), (False, b'{"c":3}')]
    for cut in range(len(data)):
        assert read_all(MessageReader(), data, [cut]) == want, cut


def test_a_frame_bigger_than_the_buffer_arrives_whole():
    frame = bytes(range(256)) * 2000  # 512,000 bytes: received into a buffer of its own
    data = b'{"x":1}\n' + binary(frame) + b'{"y":2}\n'
    assert read_all(MessageReader(), data, [3, 10, 70_000, 300_000]) == [
        (False, b'{"x":1}'),
        (True, frame),
        (False, b'{"y":2}'),
    ]


def test_a_line_longer_than_the_buffer_arrives_whole():
    line = b'{"data":"' + b"x" * 300_000 + b'"}'
    assert read_all(MessageReader(), line + b"\n" + binary(b"\x01f"), [1000, 65_000, 200_000]) == [
        (False, line),
        (True, b"\x01f"),
    ]


def test_a_frame_over_the_limit_is_an_error_not_an_allocation():
    reader = MessageReader(max_size=1000)
    with pytest.raises(UnixProtocolError, match="1001 bytes is over 1000"):
        reader.feed(struct.pack("<BI", 0, 1001))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=3000).map(lambda b: (True, b)),
            st.from_regex(rb"\{[a-z0-9]{0,200}\}", fullmatch=True).map(lambda b: (False, b)),
        ),
        max_size=20,
    ),
    st.lists(st.integers(min_value=0, max_value=80_000), max_size=8),
)
def test_any_mix_in_any_pieces(messages, cuts):
    data = b"".join(binary(p) if is_bin else p + b"\n" for is_bin, p in messages)
    assert read_all(MessageReader(), data, cuts) == messages
