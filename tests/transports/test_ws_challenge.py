"""Off loopback, ccxd's own clients log in by challenge–response: the token is never on the wire.

The daemon listens on loopback; a proxy on this machine's outward address
makes it a remote one for the client, and records what the client sends.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.helpers import run_job
from tests.security.conftest import outward_address


async def recording_proxy(port: int, seen: bytearray) -> asyncio.Server:
    """A TCP proxy (on every address) to loopback ``port`` that keeps every byte the client sends."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool) -> None:
        try:
            while data := await reader.read(65536):
                if keep:
                    seen.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    return await asyncio.start_server(handle, "0.0.0.0", 0)


async def test_off_loopback_the_client_library_and_ccxctl_never_send_the_token(daemon):
    from ccxd.client import connect

    host = outward_address()
    seen = bytearray()
    proxy = await recording_proxy(daemon.ws_port, seen)
    url = f"ws://{host}:{proxy.sockets[0].getsockname()[1]}/ws"
    async with proxy:
        client = await connect(url, token=daemon.token, reconnect=False)
        try:
            out, _, job, _ = await run_job(client, "echo challenged")
        finally:
            await client.close()
        assert out == b"challenged\n" and job.exit_code == 0
        res = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ccxctl", "--url", url, "--token-file", str(daemon.token_path), "run", "echo hi"],
            env=dict(daemon.env, CCXD_SOCKET="/nonexistent/ccxd.sock"),
            capture_output=True,
            timeout=60,
        )
        assert (res.returncode, res.stdout) == (0, b"hi\n"), res.stderr
    assert seen.count(b"Ccxd-Client-Proof: ") == 2  # one login each
    assert daemon.token.encode() not in seen and b"Authorization" not in seen
    assert daemon.token not in daemon.log()
