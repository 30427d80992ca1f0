"""The client's RFC 6455 core, fed what the ``websockets`` library's own server side produces."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from ccxd.client.wsproto import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameReader,
    HandshakeError,
    WsProtocolError,
    close_payload,
    encode_frame,
    handshake_request,
    head_end,
    new_key,
    parse_handshake,
)


def server() -> tuple[ServerProtocol, str]:
    """A websockets server protocol that accepted our handshake request; returns it and the key."""
    key = new_key()
    srv = ServerProtocol(max_size=None)
    srv.receive_data(handshake_request("127.0.0.1:1", "/ws?x=1", key, [("Authorization", "Bearer t")]))
    [request] = srv.events_received()
    assert isinstance(request, Request)
    assert request.path == "/ws?x=1" and request.headers["Authorization"] == "Bearer t"
    response = srv.accept(request)
    srv.send_response(response)
    head = b"".join(srv.data_to_send())
    assert head_end(head) == len(head)
    parse_handshake(head, key)
    assert srv.state is State.OPEN
    return srv, key


def feed_in_pieces(reader: FrameReader, wire: bytes, piece: int) -> None:
    """Write ``wire`` into the reader's buffers at most ``piece`` bytes at a time, as a socket would."""
    view = memoryview(wire)
    while view:
        room = reader.buffer()
        n = min(len(room), len(view), piece)
        room[:n] = view[:n]
        view = view[n:]
        reader.received(n)


def events(reader: FrameReader) -> list[tuple[int, bytes]]:
    out = [(op, bytes(data)) for op, data in reader.events]
    reader.events.clear()
    return out


# -- handshake ----------------------------------------------------------------


def test_the_handshake_is_accepted_by_websockets_and_its_answer_by_us():
    server()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.replace(b"101 Switching Protocols", b"401 Unauthorized"), "HTTP 401"),
        (lambda h: h.replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x"), "Accept"),
        (lambda h: h.replace(b"Upgrade: websocket", b"Upgrade: h2c"), "upgrade"),
        (lambda h: h.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"), "extension"),
        (lambda h: b"SSH-2.0-OpenSSH\r\n\r\n", "HTTP"),
    ],
)
def test_a_wrong_handshake_answer_is_refused(change, message):
    key = new_key()
    srv = ServerProtocol()
    srv.receive_data(handshake_request("h", "/", key))
    [request] = srv.events_received()
    srv.send_response(srv.accept(request))
    head = change(b"".join(srv.data_to_send()))
    with pytest.raises(HandshakeError, match=message) as info:
        parse_handshake(head, key)
    if message == "HTTP 401":
        assert info.value.status == 401


def test_header_injection_and_endless_heads_are_refused():
    with pytest.raises(ValueError):
        handshake_request("h", "/", new_key(), [("Authorization", "Bearer x\r\nEvil: 1")])
    with pytest.raises(HandshakeError):
        head_end(b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 20_000)


# -- frames from a real server implementation ----------------------------------------


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_messages_of_every_size_arrive_whole_however_the_bytes_are_split(piece):
    srv, _ = server()
    sizes = [0, 1, 125, 126, 65535, 65536, 70_000, 300_000, 1_500_000]
    payloads = [os.urandom(n) for n in sizes]
    for p in payloads:
        srv.send_binary(p)
    srv.send_text("ünïcode {}".encode())
    reader = FrameReader(max_size=1 << 30)
    feed_in_pieces(reader, b"".join(srv.data_to_send()), piece)
    assert events(reader) == [(OP_BINARY, p) for p in payloads] + [(OP_TEXT, "ünïcode {}".encode())]


def test_fragmented_messages_pings_and_the_close_frame():
    srv, _ = server()
    srv.send_text(b"hel", fin=False)
    srv.send_ping(b"are you there")  # control frames may come between fragments
    srv.send_continuation(b"lo", fin=False)
    srv.send_continuation(b"!", fin=True)
    srv.send_binary(b"\x00" * 200_000, fin=False)
    srv.send_continuation(b"\xff", fin=True)
    srv.send_close(CloseCode.GOING_AWAY, "bye")
    reader = FrameReader(max_size=1 << 30)
    feed_in_pieces(reader, b"".join(srv.data_to_send()), 1000)
    assert events(reader) == [
        (OP_PING, b"are you there"),
        (OP_TEXT, b"hello!"),
        (OP_BINARY, b"\x00" * 200_000 + b"\xff"),
        (OP_CLOSE, Close(CloseCode.GOING_AWAY, "bye").serialize()),
    ]
    assert reader.closed


@given(st.lists(st.binary(max_size=3000), max_size=8), st.integers(1, 5000))
def test_any_sequence_of_messages_in_any_split(payloads, piece):
    srv, _ = server()
    for p in payloads:
        srv.send_binary(p)
    reader = FrameReader(max_size=1 << 20)
    feed_in_pieces(reader, b"".join(srv.data_to_send()), piece)
    assert events(reader) == [(OP_BINARY, p) for p in payloads]


def test_our_frames_are_masked_and_read_back_by_websockets():
    srv, _ = server()
    big = os.urandom(70_000)
    srv.receive_data(encode_frame(OP_TEXT, b'{"id":1}') + encode_frame(OP_BINARY, big))
    srv.receive_data(encode_frame(OP_CLOSE, close_payload(1000)))
    frames = srv.events_received()
    assert [(f.opcode, f.data) for f in frames if isinstance(f, Frame)][:2] == [
        (Opcode.TEXT, b'{"id":1}'),
        (Opcode.BINARY, big),
    ]
    assert srv.close_rcvd is not None and srv.close_rcvd.code == 1000


# -- hostile servers ------------------------------------------------------------------

HOSTILE = [
    (bytes([0x82, 0x81]) + b"mask" + b"x", 1002, "masked"),  # servers must not mask
    (bytes([0xC2, 0x01]) + b"x", 1002, "reserved"),  # RSV1 without permessage-deflate
    (bytes([0x83, 0x00]), 1002, "opcode"),  # opcode 3 is reserved
    (bytes([0x09, 0x00]), 1002, "fragmented control"),  # ping without FIN
    (bytes([0x89, 0x7E, 0x00, 0x7E]) + b"x" * 126, 1002, "125"),  # ping over 125 bytes
    (bytes([0x80, 0x01]) + b"x", 1002, "continuation"),  # continuation of nothing
    (bytes([0x01, 0x01, 0x61, 0x81, 0x01, 0x62]), 1002, "before the last"),  # text inside text
    (bytes([0x81, 0x02]) + b"\xc3\x28", 1007, "UTF-8"),  # invalid UTF-8 text
    (bytes([0x88, 0x01, 0x03]), 1002, "one-byte"),
    (bytes([0x88, 0x02, 0x03, 0xED]), 1002, "close code"),  # 1005 may not be sent
    (bytes([0x88, 0x04, 0x03, 0xE8, 0xC3, 0x28]), 1007, "reason"),
    (bytes([0x82, 0x7F]) + (1 << 62).to_bytes(8, "big"), 1009, "over"),  # no 4 EiB allocation
]


@pytest.mark.parametrize(("wire", "code", "words"), HOSTILE)
def test_a_server_that_breaks_the_protocol_gets_the_right_close_code(wire, code, words):
    reader = FrameReader(max_size=1 << 20)
    with pytest.raises(WsProtocolError, match=words) as info:
        feed_in_pieces(reader, wire, 1 << 20)
    assert info.value.code == code


def test_the_size_limit_counts_a_whole_fragmented_message():
    reader = FrameReader(max_size=100)
    reader.feed(bytes([0x02, 60]) + b"a" * 60)
    with pytest.raises(WsProtocolError) as info:
        reader.feed(bytes([0x80, 60]) + b"b" * 60)
    assert info.value.code == 1009
