"""Small helpers shared by the integration tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from ccxd.protocol import JobFinished, JobInfo, OutputChunk


async def run_job(client, command, **options) -> tuple[bytes, bytes, JobInfo, list]:
    """Run a job through the client; return stdout, stderr, final record and all events."""
    out, err = bytearray(), bytearray()
    events = []
    finished = None
    async for ev in client.run(command, **options):
        events.append(ev)
        if isinstance(ev, OutputChunk):
            (out if ev.stream == "stdout" else err).extend(ev.raw())
        elif isinstance(ev, JobFinished):
            finished = ev.job
    assert finished is not None
    return bytes(out), bytes(err), finished, events


def job_pids(job_id: str) -> list[int]:
    """Live processes whose environment carries the job's CCXD_JOB_ID."""
    marker = f"CCXD_JOB_ID={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


class RawConnection:
    """A plain socket speaking newline-delimited JSON, for protocol-level tests."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj) -> None:
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def recv(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method: str, params=None, req_id=1):
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        while True:
            reply = self.recv()
            if "method" not in reply:
                return reply

    def close(self) -> None:
        self.sock.close()
