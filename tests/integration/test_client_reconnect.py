"""The client library reconnects after a dropped connection and resumes followed jobs exactly."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from ccxd.client import connect
from ccxd.client.connection import ConnectionLost
from ccxd.protocol import JobFinished, OutputChunk


class DroppingProxy:
    """Forwards a Unix socket to the daemon's and can cut every connection at once."""

    def __init__(self, listen: Path, upstream: Path) -> None:
        self.listen = listen
        self.upstream = upstream
        self.pipes: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.accepted = 0
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._handle, str(self.listen))

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_unix_connection(str(self.upstream))
        self.pipes.append((w, uw))
        self.accepted += 1
        self.connected.set()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(r, uw), pump(ur, w))

    def drop_all(self) -> None:
        self.connected.clear()
        for a, b in self.pipes:
            a.transport.abort()
            b.transport.abort()
        self.pipes.clear()

    async def stop(self) -> None:
        self.drop_all()
        self.server.close()


async def test_followed_job_resumes_byte_exact_after_drops(daemon, tmp_root):
    proxy = DroppingProxy(tmp_root / "proxy.sock", daemon.socket)
    await proxy.start()
    client = await connect(proxy.listen, reconnect_timeout=10)
    # 8 MiB of random data, written slowly enough that the drops land mid-stream.
    command = "python3 -c 'import os,sys,time\nfor _ in range(64):\n    sys.stdout.buffer.write(os.urandom(131072)); sys.stdout.flush(); time.sleep(0.01)'"
    job = await client.start(command, subscribe=True)
    digest = hashlib.sha256()
    received = 0
    drops = 0
    finished = None
    async for ev in client.events(job.id):
        if isinstance(ev, OutputChunk):
            data = ev.raw()
            digest.update(data)
            received += len(data)
            # Cut the connection three times, at different points of the stream.
            if drops < 3 and received > (drops + 1) * 2 * 1024 * 1024:
                drops += 1
                proxy.drop_all()
        elif isinstance(ev, JobFinished):
            finished = ev.job
    assert drops == 3
    assert client.reconnects == 3
    assert finished is not None and finished.exit_code == 0
    assert received == finished.output_bytes == 64 * 131072
    # The daemon's own record of the output matches what the client assembled.
    direct = await connect(daemon.socket)
    expected = hashlib.sha256()
    offset = 0
    while True:
        page = await direct.read(job.id, offset=offset, max_bytes=4 << 20)
        for chunk in page.chunks:
            expected.update(chunk.raw())
        offset = page.next_offset
        if page.eof:
            break
    assert digest.hexdigest() == expected.hexdigest()
    await direct.close()
    await client.close()
    await proxy.stop()


async def test_calls_in_flight_fail_clearly_and_later_calls_work(daemon, tmp_root):
    proxy = DroppingProxy(tmp_root / "proxy.sock", daemon.socket)
    await proxy.start()
    client = await connect(proxy.listen, reconnect_timeout=10)
    assert (await client.ping()).pong
    pending = asyncio.ensure_future(client.call("daemon.ping"))
    await asyncio.sleep(0)  # the request is written before the cut
    proxy.drop_all()
    try:
        await pending  # it either got its answer before the cut or fails clearly
    except ConnectionLost:
        pass
    await proxy.connected.wait()
    await client.wait_connected()
    assert (await client.ping()).pong
    assert client.reconnects == 1
    await client.close()
    await proxy.stop()
