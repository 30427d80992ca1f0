"""The Unix socket: private, many clients, and precise errors for bad input."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys

import psutil

from tests.conftest import require_tool
from tests.helpers import RawConnection, run_job


def test_socket_and_directory_are_private(daemon):
    assert stat.S_IMODE(os.stat(daemon.socket.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600


def test_a_peer_with_another_uid_is_refused(daemon):
    setpriv = require_tool("setpriv")
    # CAP_DAC_OVERRIDE gets the client past the file permissions, so that the
    # SO_PEERCRED check is what refuses it.
    client = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
        's.sendall(b\'{"jsonrpc":"2.0","id":1,"method":"daemon.ping"}\\n\');'
        "data=b''\n"
        "while True:\n"
        "    d=s.recv(4096)\n"
        "    if not d: break\n"
        "    data+=d\n"
        "sys.stdout.write(data.decode())"
    )
    res = subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_override",
            "--ambient-caps=+dac_override",
            sys.executable,
            "-c",
            client,
            str(daemon.socket),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and '"code":-32005' in lines[0] and "uid 65534" in lines[0]
    assert "pong" not in res.stdout  # the request was never served; the connection closed


def test_bad_input_gets_precise_errors_and_the_connection_keeps_working(daemon):
    c = RawConnection(daemon.socket)
    c.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    assert c.recv()["error"]["code"] == -32700
    reply = c.call("job.start", {"command": "true", "timeout": "soon"}, req_id=2)
    assert reply["id"] == 2 and reply["error"]["code"] == -32602
    assert "$.params.timeout" in reply["error"]["message"] and "Expected" in reply["error"]["message"]
    reply = c.call("job.frobnicate", {}, req_id=3)
    assert reply["error"]["code"] == -32601 and reply["id"] == 3
    reply = c.call("job.start", {"command": "true", "bogus": 1}, req_id=4)
    assert reply["error"]["code"] == -32602 and "bogus" in reply["error"]["message"]
    c.send({"jsonrpc": "1.0", "id": 5, "method": "daemon.ping"})
    assert c.recv()["error"]["code"] == -32600
    c.send({"jsonrpc": "2.0", "id": 6, "method": "job.get", "params": ["positional"]})
    assert c.recv()["error"]["code"] == -32602
    c.send({"jsonrpc": "2.0", "id": 7, "method": "job.start", "params": {"command": "echo \u0000"}})
    reply = c.recv()
    assert reply["error"]["code"] == -32602 and "NUL" in reply["error"]["message"]
    assert c.call("daemon.ping", req_id=8)["result"]["pong"] is True
    c.close()


def test_batches_and_client_notifications(daemon):
    c = RawConnection(daemon.socket)
    c.send(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "daemon.ping"},
            {"jsonrpc": "2.0", "method": "daemon.ping"},
            {"jsonrpc": "2.0", "id": 2},
        ]
    )
    batch = c.recv()
    assert isinstance(batch, list) and [r["id"] for r in batch] == [1, 2]
    assert batch[0]["result"]["pong"] and batch[1]["error"]["code"] == -32600
    c.send([])
    assert c.recv()["error"]["code"] == -32600
    # A notification from the client is executed but never answered.
    c.send({"jsonrpc": "2.0", "method": "daemon.ping"})
    c.send({"jsonrpc": "2.0", "method": "no.such.method"})
    assert c.call("daemon.ping", req_id=9)["id"] == 9  # the next line is this reply
    c.close()


def test_oversized_messages_are_refused_without_being_read_into_memory(daemon):
    proc = psutil.Process(daemon.proc.pid)
    before = proc.memory_info().rss
    c = RawConnection(daemon.socket)
    chunk = b"x" * (1 << 20)
    c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping","params":{"pad":"')
    for _ in range(50):  # 50 MiB without a newline
        c.send_raw(chunk)
    reply = c.recv()
    assert reply["error"]["code"] == -32600 and reply["error"]["data"]["limit"] == 1 << 20
    c.send_raw(b'"}}\n')
    assert c.call("daemon.ping", req_id=2)["result"]["pong"] is True
    assert proc.memory_info().rss - before < 20 << 20
    c.close()


async def test_many_clients_at_once(daemon):
    clients = await asyncio.gather(*(daemon.client() for _ in range(50)))
    results = await asyncio.gather(*(run_job(c, f"echo client {i}") for i, c in enumerate(clients)))
    assert [out for out, *_ in results] == [f"client {i}\n".encode() for i in range(50)]
    await asyncio.gather(*(c.close() for c in clients))


async def test_disconnected_client_leaves_its_job_running_and_connections_are_released(daemon):
    c = await daemon.client()
    job = await c.start("echo hi; sleep 1; echo still here")
    await c.close()
    for _ in range(20):
        raw = RawConnection(daemon.socket)
        raw.call("daemon.ping")
        raw.close()
    c2 = await daemon.client()
    out = b""
    async for ev in c2.follow(job.id):
        if hasattr(ev, "data"):
            out += ev.raw()
    assert out == b"hi\nstill here\n"
    status = await c2.status()
    assert status.connections <= 2  # this client (and at most one closing)
    fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
    assert fds < 40
    await c2.close()


def test_max_connections_applies_to_the_unix_socket_with_a_one_line_refusal(daemon_factory):
    """Issue 19: ``max_connections`` held for WebSocket clients only; the Unix socket took any number."""
    d = daemon_factory(extra_env={"CCXD_MAX_CONNECTIONS": "3"})
    held = [RawConnection(d.socket) for _ in range(3)]
    for c in held:
        assert c.call("daemon.ping")["result"]["pong"] is True
    env = dict(d.env)
    for args in (["run", "echo never"], ["status"]):  # the fast path, and the client library's
        res = subprocess.run([sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=60)
        err = res.stderr.decode()
        assert "Traceback" not in err and res.stdout == b"", err
        assert res.returncode != 0 and len(err.splitlines()) == 1, err
        assert err.startswith("ccxctl: ") and "3 connections (max_connections)" in err, err
    held.pop().close()
    for _ in range(100):  # the daemon sees the close on its next loop turn
        ok = subprocess.run([sys.executable, "-m", "ccxctl", "run", "echo ok"], env=env, capture_output=True, timeout=60)
        if ok.returncode == 0:
            break
    assert ok.stdout == b"ok\n", ok.stderr
    status = held[0].call("daemon.status")["result"]
    assert status["refused"]["unix_max_connections"] >= 1, status
    assert "max_connections is 3" in d.log()
    for c in held:
        c.close()
