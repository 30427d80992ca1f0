"""The client library's WebSocket transport over real sockets, against the `websockets` server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ccxd.client.transports import TransportError, WebSocketTransport

Handler = Callable[[ServerConnection], Awaitable[None]]


async def serving(handler: Handler, **kwargs: object) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None, **kwargs) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def collect(transport: WebSocketTransport) -> list[tuple[bool, bytes]]:
    return [(binary, bytes(data)) async for binary, data in transport.messages()]


async def read_into(transport: WebSocketTransport, got: list[bytes]) -> None:
    async for _binary, data in transport.messages():
        got.append(bytes(data))


async def test_messages_pings_fragments_and_a_normal_close():
    big = os.urandom(3_000_000)
    pinged: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None and "Authorization" not in ws.request.headers
        assert await ws.recv() == '{"hello":1}'
        pong = await ws.ping(b"ping!")
        await ws.send(b"small")
        await ws.send(big)
        await ws.send(["frag", "mented ", "text"])  # one message in three frames
        pinged.set_result(await pong)  # the client answered our ping while it read
        await ws.close(1000, "done")

    async for url in serving(handler):
        transport = await WebSocketTransport.open(url, None)  # a loopback server of our own: no token
        await transport.send(b'{"hello":1}')
        got = await asyncio.wait_for(collect(transport), 30)
        await transport.close()
    assert got == [(True, b"small"), (True, big), (False, b"fragmented text")]
    assert pinged.done()


async def test_an_abnormal_close_or_a_dropped_connection_is_an_error():
    async def closes_1011(ws: ServerConnection) -> None:
        await ws.send(b"one")
        await ws.close(1011, "server bug")

    async for url in serving(closes_1011):
        transport = await WebSocketTransport.open(url, None)
        got: list[bytes] = []
        with pytest.raises(ConnectionError, match="1011 server bug"):
            await read_into(transport, got)
        assert got == [b"one"]
        await transport.close()

    async def drops(ws: ServerConnection) -> None:
        ws.transport.abort()

    async for url in serving(drops):
        transport = await WebSocketTransport.open(url, None)
        with pytest.raises(ConnectionError, match="no close frame"):
            await collect(transport)


async def test_a_reader_that_does_not_keep_up_stops_the_socket_and_loses_nothing():
    frames = [os.urandom(200_000) for _ in range(200)]  # 40 MB, far more than the socket buffers

    sent_all = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        for f in frames:
            await ws.send(f)
        sent_all.set()
        await ws.close()

    async for url in serving(handler, write_limit=1 << 20):
        transport = await WebSocketTransport.open(url, None)
        stream = transport.messages()
        first = await anext(stream)
        # While we do not read, the transport stops reading too: few messages pile up here,
        # the rest waits in the server (whose sends cannot finish).
        async with asyncio.timeout(10):
            while not transport._proto._paused_reading:
                await asyncio.sleep(0.01)
        assert len(transport._proto.messages) <= 64
        assert not sent_all.is_set()
        rest = [bytes(data) async for _binary, data in stream]
        await transport.close()
    assert [bytes(first[1]), *rest] == frames


async def test_refusals_say_why():
    async def never(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    def refuse(connection: ServerConnection, request: object) -> object:
        return connection.respond(401, "no\n")

    async for url in serving(never, process_request=refuse):
        with pytest.raises(TransportError, match="authentication failed") as info:
            await WebSocketTransport.open(url, None)
        assert info.value.denied
        # A loopback server of our own gets the token itself (elsewhere: tests/security).
        with pytest.raises(TransportError, match="authentication failed") as info:
            await WebSocketTransport.open(url, "s3cret-token-s3cret-token")
        assert info.value.denied
