"""Hostile input: fuzzed bytes, abusive WebSocket peers, hostile job parameters, secrets.

Every drill ends with the daemon answering ``status`` and nothing leaked.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings

from tests.gauntlet.drills import assert_drill_ends_clean, daemon_rss
from tests.helpers import RawConnection, job_pids
from tests.transports.test_websocket import assert_response, frames

# -- the Unix socket, fuzzed --------------------------------------------------------------------


def test_fuzzed_lines_on_the_unix_socket_get_valid_replies_and_the_daemon_stays_up(daemon):
    conn = RawConnection(daemon.socket)
    counter = itertools.count()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(frames)
    def check(frame: bytes | str) -> None:
        line = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
        marker = f"fz-{next(counter)}"
        # One line per message: a raw newline would only split the frame into two fuzzed lines.
        conn.send_raw(line.replace(b"\n", b" ") + b"\n")
        conn.send({"jsonrpc": "2.0", "id": marker, "method": "daemon.ping"})
        while True:
            msg = conn.recv()
            if isinstance(msg, list):
                assert msg, "an empty batch reply"
                for item in msg:
                    assert_response(item)
                continue
            if isinstance(msg, dict) and "method" in msg:  # a notification of a job the fuzzer started
                continue
            assert_response(msg)
            if msg["id"] == marker:
                assert msg["result"]["pong"] is True
                return

    check()
    assert next(counter) >= 250
    conn.close()
    assert_drill_ends_clean(daemon.socket)


def test_random_binary_garbage_on_the_unix_socket(daemon):
    rng = __import__("random").Random(20261125)
    conn = RawConnection(daemon.socket)
    for i in range(200):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000))).replace(b"\n", b"")
        conn.send_raw(
            junk + b"\n" + json.dumps({"jsonrpc": "2.0", "id": i, "method": "daemon.ping"}).encode() + b"\n"
        )
        replies = []
        while not (replies and replies[-1].get("id") == i):
            replies.append(conn.recv())
        for reply in replies:
            assert_response(reply)
        assert replies[-1]["result"]["pong"] is True
    conn.close()
    assert_drill_ends_clean(daemon.socket)


# -- hostile job parameters ---------------------------------------------------------------------

HOSTILE_PARAMS = {
    "NUL in command": ({"command": "echo a\u0000b"}, "NUL byte not allowed - at `$.params.command`"),
    "NUL in an argv word": (
        {"command": ["echo", "a\u0000"]},
        "NUL byte not allowed - at `$.params.command[1]`",
    ),
    "NUL in an env value": (
        {"command": "true", "env": {"A": "x\u0000y"}},
        "NUL byte not allowed - at `$.params.env.A`",
    ),
    "NUL in an env name": ({"command": "true", "env": {"A\u0000": "x"}}, "NUL byte not allowed"),
    "= in an env name": ({"command": "true", "env": {"A=B": "x"}}, "invalid environment name 'A=B'"),
    "NUL in cwd": ({"command": "true", "cwd": "/tmp\u0000x"}, "NUL byte not allowed - at `$.params.cwd`"),
    "relative cwd": ({"command": "true", "cwd": "some/dir"}, "cwd must be an absolute path"),
    "negative timeout": (
        {"command": "true", "timeout": -1},
        "Expected `float` >= 0.0, got -1 - at `$.params.timeout`",
    ),
    "absurd timeout": ({"command": "true", "timeout": 1e300}, "Expected `float` <= 31622400.0"),
    "timeout of the wrong type": (
        {"command": "true", "timeout": "soon"},
        "got `str` - at `$.params.timeout`",
    ),
    "negative idle timeout": ({"command": "true", "idle_timeout": -5}, "at `$.params.idle_timeout`"),
    "an env entry longer than exec allows": (
        {"command": "true", "env": {"BIG": "x" * 200_000}},
        "env.BIG is 200004 bytes; the kernel limit for one argument or environment entry is 131071",
    ),
    "a command longer than exec allows": ({"command": "#" * 140_000}, "command is 140000 bytes"),
    "empty command": ({"command": ""}, "Expected `str` of length >= 1"),
}


@pytest.mark.parametrize(("params", "expected"), HOSTILE_PARAMS.values(), ids=HOSTILE_PARAMS.keys())
def test_hostile_job_parameters_get_a_precise_error_and_start_nothing(daemon, params, expected):
    conn = RawConnection(daemon.socket)
    reply = conn.call("job.start", params)
    assert reply["id"] == 1 and reply["error"]["code"] == -32602, reply
    assert expected in reply["error"]["message"], reply["error"]["message"]
    listed = conn.call("job.list", {}, req_id=2)["result"]["jobs"]
    assert listed == [], f"a half-started job: {listed}"
    conn.close()
    assert_drill_ends_clean(daemon.socket)


def test_invalid_utf8_and_lone_surrogates_are_parse_errors(daemon):
    conn = RawConnection(daemon.socket)
    conn.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"job.start","params":{"command":"echo \xff\xfe"}}\n')
    assert conn.recv()["error"]["code"] == -32700
    conn.send_raw(
        b'{"jsonrpc":"2.0","id":2,"method":"job.start","params":{"command":"true","env":{"A":"\\udcff"}}}\n'
    )
    reply = conn.recv()
    assert reply["error"]["code"] == -32700 and "surrogate" in reply["error"]["message"]
    assert conn.call("job.list", {}, req_id=3)["result"]["jobs"] == []
    conn.close()


def test_a_10_mib_environment_is_refused_unread_and_the_connection_goes_on(daemon):
    conn = RawConnection(daemon.socket)
    before = daemon_rss(daemon.proc.pid)
    big = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "job.start",
        "params": {"command": "true", "env": {"A": "x" * (10 << 20)}},
    }
    conn.send(big)
    reply = conn.recv()
    assert reply["error"]["code"] == -32600 and reply["error"]["data"] == {"limit": 1 << 20}
    assert conn.call("job.list", {}, req_id=2)["result"]["jobs"] == []
    # The 10 MiB were discarded as they came, never buffered.
    assert daemon_rss(daemon.proc.pid) - before < 8 << 20
    conn.close()


@pytest.mark.parametrize(
    ("cwd", "why"),
    [("/nonexistent/dir", "does not exist"), ("/etc/passwd", "is not a directory")],
)
def test_a_cwd_that_cannot_be_entered_is_a_finished_failed_job_with_the_reason(daemon, cwd, why):
    """Checked where it counts, at exec: the record says so, and no process was left."""
    conn = RawConnection(daemon.socket)
    reply = conn.call("job.start", {"command": "true", "cwd": cwd, "subscribe": True})
    job_id = reply["result"]["id"]
    while True:
        msg = conn.recv()
        if msg.get("method") == "job.finished":
            job = msg["params"]["job"]
            break
    assert job["reason"] == "failed_to_start" and job.get("pid") is None
    assert why in job["error"] and cwd in job["error"]
    conn.close()
    assert_drill_ends_clean(daemon.socket, [job_id])


def test_an_unreadable_cwd_fails_cleanly(daemon_factory, tmp_root):
    if os.getuid() == 0:
        # Permissions do not stop root; a path through a file stops everyone.
        blocker = tmp_root / "file"
        blocker.write_text("")
        cwd, why = str(blocker / "sub"), "is not a directory"
    else:
        locked = tmp_root / "locked"
        locked.mkdir(mode=0o000)
        cwd, why = str(locked), "is not accessible"
    d = daemon_factory()
    conn = RawConnection(d.socket)
    reply = conn.call("job.start", {"command": "true", "cwd": cwd, "subscribe": True})
    while True:
        msg = conn.recv()
        if msg.get("method") == "job.finished":
            break
    assert msg["params"]["job"]["reason"] == "failed_to_start" and why in msg["params"]["job"]["error"]
    conn.close()
    assert_drill_ends_clean(d.socket, [reply["result"]["id"]])


# -- WebSocket abuse ------------------------------------------------------------------------------


class _Peer:
    """A raw WebSocket client socket and what it has read past the handshake."""

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.buf = rest

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def _handshake(port: int, token: str | None, extra: str = "") -> tuple[_Peer, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    response, rest = head.split(b"\r\n\r\n", 1)
    return _Peer(sock, rest), response


def _frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _close_code(peer: _Peer) -> int | None:
    """Read server frames until a close frame; its status code (None if the socket just ended)."""

    def need(n: int) -> bytes:
        while len(peer.buf) < n:
            data = peer.sock.recv(65536)
            if not data:
                raise EOFError
            peer.buf += data
        out, peer.buf = peer.buf[:n], peer.buf[n:]
        return out

    try:
        while True:
            b0, b1 = need(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", need(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", need(8))
            payload = need(n)
            if b0 & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    except EOFError:
        return None


def test_invalid_utf8_in_a_text_frame_closes_with_1007(daemon):
    sock, response = _handshake(daemon.ws_port, daemon.token)
    assert response.startswith(b"HTTP/1.1 101")
    sock.sendall(_frame(0x1, b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping","x":"\xff"}'))
    assert _close_code(sock) == 1007
    sock.close()
    assert_drill_ends_clean(daemon.socket)


def test_a_deflate_bomb_cannot_be_sent_compression_is_never_negotiated(daemon):
    sock, response = _handshake(
        daemon.ws_port,
        daemon.token,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    assert response.startswith(b"HTTP/1.1 101")
    assert b"permessage-deflate" not in response.lower()
    before = daemon_rss(daemon.proc.pid)
    # 1 MiB of zeros deflates to ~1 KiB; as a "compressed" frame (RSV1) it must be refused, not inflated.
    import zlib

    bomb = zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"\0" * (64 << 20))
    sock.sendall(_frame(0x1, bomb, rsv1=True))
    assert _close_code(sock) == 1002
    sock.close()
    assert daemon_rss(daemon.proc.pid) - before < 16 << 20
    assert_drill_ends_clean(daemon.socket)


def test_an_oversized_frame_is_refused_from_its_header_with_1009(daemon):
    sock, response = _handshake(daemon.ws_port, daemon.token)
    assert response.startswith(b"HTTP/1.1 101")
    before = daemon_rss(daemon.proc.pid)
    # Announce 1 GiB; send only the header and a little: the limit applies before the payload is read.
    header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + os.urandom(4)
    sock.sendall(header + b"x" * 1000)
    assert _close_code(sock) == 1009
    sock.close()
    assert daemon_rss(daemon.proc.pid) - before < 16 << 20
    assert_drill_ends_clean(daemon.socket)


def test_handshake_slowloris_is_cut_off_and_others_are_served_meanwhile(daemon):
    slow = []
    for _ in range(100):
        # Another peer (127.0.0.2): past ws_handshakes_per_peer its connections are cut at once.
        s = socket.create_connection(("127.0.0.1", daemon.ws_port), timeout=30, source_address=("127.0.0.2", 0))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        slow.append(s)
    # Meanwhile a real client connects, authenticates and is served.
    sock, response = _handshake(daemon.ws_port, daemon.token)
    assert response.startswith(b"HTTP/1.1 101")
    sock.close()
    started = time.monotonic()
    for s in slow:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(b"X-Slow: 1\r\n")  # keep dribbling until the server gives up on us
    closed = 0
    for s in slow:
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
        closed += 1
        s.close()
    assert closed == len(slow) and time.monotonic() - started < 30
    assert_drill_ends_clean(daemon.socket)


async def test_thousands_of_pipelined_requests_are_all_answered_with_bounded_memory(daemon):
    import asyncio

    from websockets.asyncio.client import connect

    n = 5000
    before = daemon_rss(daemon.proc.pid)
    async with connect(
        daemon.ws_url, additional_headers={"Authorization": f"Bearer {daemon.token}"}, max_size=None
    ) as ws:
        assert json.loads(await ws.recv())["method"] == "connected"

        async def send_all() -> None:
            for i in range(n):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "job.list", "params": {}}))

        sender = asyncio.create_task(send_all())
        ids = []
        while len(ids) < n:
            msg = json.loads(await ws.recv())
            if "id" in msg:
                assert "result" in msg, msg
                ids.append(msg["id"])
        await sender
    assert ids == list(range(n))  # every one answered, in order
    assert daemon_rss(daemon.proc.pid) - before < 32 << 20
    assert_drill_ends_clean(daemon.socket)


# -- secrets --------------------------------------------------------------------------------------


async def test_tokens_and_secret_env_values_never_appear_in_logs_history_or_status(daemon):
    import subprocess
    import sys

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    secret = "s3cr3t-" + os.urandom(8).hex()
    wrong = "wrong-" + os.urandom(16).hex()
    try:
        async with connect(daemon.ws_url, additional_headers={"Authorization": f"Bearer {wrong}"}):
            pass
    except InvalidStatus:
        pass
    async with connect(daemon.ws_url, additional_headers={"Authorization": f"Bearer {daemon.token}"}) as ws:
        await ws.recv()
        env = {"ANTHROPIC_API_KEY": secret, "GH_TOKEN": secret, "DB_PASSWORD": secret}
        await ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "job.start",
                    "params": {"command": "true", "env": env, "subscribe": True},
                }
            )
        )
        seen = []
        while True:
            raw = await ws.recv()
            seen.append(raw)
            if '"job.finished"' in raw:
                break
    job_id = json.loads(seen[0])["result"]["id"]
    conn = RawConnection(daemon.socket)
    views = {
        "wire": "".join(seen),
        "job.get": json.dumps(conn.call("job.get", {"job_id": job_id})),
        "history": json.dumps(conn.call("history.list", {}, req_id=2)),
        "status": json.dumps(conn.call("daemon.status", req_id=3)),
    }
    conn.close()
    cli = subprocess.run(
        [sys.executable, "-m", "ccxctl", "history", "show", job_id, "--json"],
        env=dict(daemon.env, CCXD_SOCKET=str(daemon.socket)),
        capture_output=True,
        check=True,
    )
    views["ccxctl history show"] = cli.stdout.decode()
    views["log"] = daemon.log()
    assert '"***"' in views["job.get"]
    for where, text in views.items():
        for value in (secret, daemon.token, wrong):
            assert value not in text, f"a secret shows in {where}"
    assert job_pids(job_id) == []
