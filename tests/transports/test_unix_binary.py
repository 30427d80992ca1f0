"""Binary output on the Unix socket: NUL-led frames between the JSON lines, the bytes as written."""

from __future__ import annotations

import asyncio
import struct

from ccxd.client import connect
from ccxd.protocol import JobFinished, OutputChunk, decode_output_frame
from tests.helpers import RawConnection

# Bytes no JSON string could carry as they are: invalid UTF-8, NULs, newlines; more than a frame holds.
PAYLOAD = (bytes(range(256)) + b"\xff\xfe\n\x00line\n") * 8000


async def test_the_client_gets_every_byte_as_written_through_binary_frames(daemon, tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(PAYLOAD)
    client = await connect(daemon.socket)  # binary is the default
    try:
        got = {"stdout": bytearray(), "stderr": bytearray()}
        finished = None
        async for ev in client.run(f"cat {src}; cat {src} >&2", timeout=0):
            if isinstance(ev, OutputChunk):
                got[ev.stream] += ev.raw()
            elif isinstance(ev, JobFinished):
                finished = ev.job
    finally:
        await client.close()
    assert finished is not None and finished.exit_code == 0
    assert bytes(got["stdout"]) == PAYLOAD
    assert bytes(got["stderr"]) == PAYLOAD


async def test_a_json_client_gets_json_lines_only(daemon, tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(PAYLOAD[:50_000])
    client = await connect(daemon.socket, binary=False)
    try:
        got = bytearray()
        async for ev in client.run(f"cat {src}", timeout=0):
            if isinstance(ev, OutputChunk):
                assert ev.encoding in ("utf-8", "base64")
                got += ev.raw()
    finally:
        await client.close()
    assert bytes(got) == PAYLOAD[:50_000]


def _records(conn: RawConnection) -> list[object]:
    """Everything the daemon sends until job.finished: dicts for lines, frames for binary records."""
    out: list[object] = []
    buf = b""
    while True:
        while True:
            if buf[:1] == b"\x00" and len(buf) >= 5:
                (n,) = struct.unpack_from("<I", buf, 1)
                if len(buf) >= 5 + n:
                    out.append(decode_output_frame(buf[5 : 5 + n]))
                    buf = buf[5 + n :]
                    continue
            elif buf[:1] not in (b"", b"\x00") and b"\n" in buf:
                import json

                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                out.append(msg)
                if msg.get("method") == "job.finished":
                    return out
                continue
            break
        data = conn.sock.recv(65536)
        assert data, "the daemon closed the connection"
        buf += data


async def test_on_the_wire_frames_follow_the_reply_and_cover_the_output_once(daemon):
    conn = RawConnection(daemon.socket)
    try:
        conn.send(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "job.start",
                "params": {
                    "command": "printf 'a\\0b\\n'; printf 'err\\n' >&2; printf 'c'",
                    "subscribe": True,
                    "binary": True,
                },
            }
        )
        records = await asyncio.to_thread(_records, conn)
    finally:
        conn.close()
    assert isinstance(records[0], dict) and records[0]["id"] == 7  # the reply comes first
    frames = [r for r in records if isinstance(r, OutputChunk)]
    assert not any(isinstance(r, dict) and r.get("method") == "job.output" for r in records)
    out = b"".join(f.raw() for f in frames if f.stream == "stdout")
    err = b"".join(f.raw() for f in frames if f.stream == "stderr")
    assert (out, err) == (b"a\x00b\nc", b"err\n")
    offsets = sorted((f.offset, len(f.raw())) for f in frames)
    pos = 0
    for off, size in offsets:  # combined offsets: contiguous, no byte twice
        assert off == pos
        pos += size
