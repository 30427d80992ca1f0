"""Frame headers the daemon builds itself, read back by the ``websockets`` library's own parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ccxd.transports.wsframe import OP_BINARY, OP_TEXT, frame_header


def parse(wire: bytes, max_size: int | None = None) -> Frame:
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=max_size)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the parser wanted more bytes than the frame has")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537, 262_164, 3 << 20])
def test_every_length_encoding_parses_to_the_same_payload(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = parse(frame_header(OP_BINARY, size) + payload)
    assert frame.opcode is Opcode.BINARY and frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload


def test_text_frames_and_the_shortest_length_form():
    assert parse(frame_header(OP_TEXT, 2) + b"{}").opcode is Opcode.TEXT
    # RFC 6455 §5.2: the minimal number of bytes must be used for the length.
    assert len(frame_header(OP_BINARY, 125)) == 2
    assert len(frame_header(OP_BINARY, 126)) == 4
    assert len(frame_header(OP_BINARY, 65536)) == 10


def test_impossible_lengths_are_refused():
    with pytest.raises(ValueError):
        frame_header(OP_BINARY, -1)
    with pytest.raises(ValueError):
        frame_header(OP_BINARY, 1 << 63)
