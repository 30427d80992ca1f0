"""The WebSocket front-end against real daemons: auth, TLS, origins, limits, framing, fuzzing."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect as sync_connect

from ccxd.client import connect as client_connect
from ccxd.protocol import (
    METHODS,
    ErrorCode,
    JobFinished,
    OutputChunk,
    decode_output_frame,
    encode_output_frame,
    unpack_output_frame,
)
from ccxd.rpc.subscription import FRAME_BYTES
from tests.helpers import RawConnection

from ..conftest import require_tool

ERROR_CODES = {int(c) for c in ErrorCode}


# -- helpers ------------------------------------------------------------------


async def ws_open(daemon, path: str = "/ws", token: str | None = "", **kwargs) -> ClientConnection:
    """A raw WebSocket to ``daemon``; ``token`` "" means the daemon's own, None none."""
    headers = dict(kwargs.pop("additional_headers", {}))
    secret = daemon.token if token == "" else token
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    base = daemon.ws_url.rsplit("/", 1)[0]
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("compression", None)
    return await connect(base + path, additional_headers=headers, open_timeout=10, **kwargs)


async def refused(daemon, path: str = "/ws", token: str | None = "", **kwargs) -> InvalidStatus:
    """The HTTP refusal of a handshake that must fail."""
    try:
        ws = await ws_open(daemon, path, token, **kwargs)
    except InvalidStatus as exc:
        return exc
    await ws.close()
    raise AssertionError(f"the handshake to {path} was accepted")


async def closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server closes; the close as the client saw it."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    except ConnectionClosed as exc:
        return exc


class Peer:
    """JSON-RPC over a raw WebSocket: calls, and the notifications seen meanwhile."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notes: list[dict] = []
        self.frames: list[bytes] = []

    async def recv(self) -> dict | bytes:
        msg = await asyncio.wait_for(self.ws.recv(), 30)
        return msg if isinstance(msg, bytes) else json.loads(msg)

    async def call(self, method: str, params: dict | None = None) -> dict:
        req_id = next(self.ids)
        body: dict = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            body["params"] = params
        await self.ws.send(json.dumps(body))
        while True:
            msg = await self.recv()
            if isinstance(msg, bytes):
                self.frames.append(msg)
            elif "method" in msg:
                self.notes.append(msg)
            elif msg.get("id") == req_id:
                return msg

    async def result(self, method: str, params: dict | None = None) -> dict:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]


def assert_response(msg: object) -> None:
    """A well-formed JSON-RPC 2.0 response object."""
    assert isinstance(msg, dict), msg
    assert msg.get("jsonrpc") == "2.0" and "id" in msg, msg
    assert ("result" in msg) != ("error" in msg), msg
    if "error" in msg:
        assert isinstance(msg["error"]["message"], str)
        assert msg["error"]["code"] in ERROR_CODES, msg


def refusal(daemon) -> str:
    """Run ``ccxd`` with the daemon's environment; it must exit 78 with one ``ccxd:`` line.

    Settings that only files or the network can check fail after logging began
    (and after the embedded redis started), so other stderr lines are log lines.
    """
    res = subprocess.run(
        [sys.executable, "-m", "ccxd"], env=daemon.env, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 78, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("ccxd:")]
    assert len(lines) == 1, res.stderr
    assert not daemon.socket.exists()
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "name", "cmdline"])
        if p.info["name"] == "redis-server" and str(daemon.root) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == [], "the embedded redis-server was left running"
    return lines[0]


# -- the listener -------------------------------------------------------------


def test_the_listener_is_in_status_with_its_real_port_and_the_token_is_private(daemon):
    reply = RawConnection(daemon.socket).call("daemon.status")["result"]
    kinds = {entry["kind"]: entry["address"] for entry in reply["listeners"]}
    assert kinds["unix"] == str(daemon.socket)
    assert kinds["websocket"] == daemon.ws_url
    assert daemon.ws_url.startswith("ws://127.0.0.1:") and daemon.ws_url.endswith("/ws")
    assert daemon.ws_port not in (0, 8003)
    assert daemon.token_path.stat().st_mode & 0o777 == 0o600
    assert daemon.token_path.parent.stat().st_mode & 0o777 == 0o700
    assert len(daemon.token) >= 40 and daemon.token not in daemon.log()


def test_health_answers_without_a_token_and_tells_no_secret(daemon):
    with urllib.request.urlopen(daemon.http_url + "/health", timeout=10) as res:
        assert res.status == 200 and res.headers["Content-Type"] == "application/json"
        body = json.loads(res.read())
    assert body["status"] == "healthy" and body["service"] == "ccxd"
    assert body["version"].startswith("0.") and body["active_sessions"] == 0
    assert body["uptime_seconds"] >= 0
    assert set(body) == {"status", "service", "version", "active_sessions", "uptime_seconds"}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(daemon.http_url + "/nothing", timeout=10)
    assert info.value.code == 404
    info.value.close()


# -- authentication -----------------------------------------------------------


async def test_auth_matrix(daemon):
    assert (await refused(daemon, token=None)).response.status_code == 401
    wrong = await refused(daemon, token="not-the-token-" + "z" * 30)
    assert wrong.response.status_code == 401
    assert "Bearer" in wrong.response.headers["WWW-Authenticate"]
    query = await refused(daemon, path=f"/ws?token={daemon.token}", token=None)
    assert query.response.status_code == 401  # by design: URLs end up in logs

    ws = await ws_open(daemon)  # Authorization: Bearer
    peer = Peer(ws)
    assert (await peer.recv())["method"] == "connected"
    assert (await peer.result("daemon.ping"))["pong"] is True
    await ws.close()

    # The browser fallback: the token as a subprotocol; the server answers "ccxd", not the token.
    ws = await ws_open(daemon, token=None, subprotocols=["ccxd", f"ccxd.bearer.{daemon.token}"])
    assert ws.subprotocol == "ccxd"
    assert (await Peer(ws).result("daemon.ping"))["pong"] is True
    await ws.close()

    ws = await ws_open(daemon, path="/ws/mcp")
    assert (await Peer(ws).result("daemon.ping"))["pong"] is True
    await ws.close()

    log = daemon.log()
    assert f"refused 127.0.0.1 (uid {os.getuid()}): no token" in log  # local peers are told apart by uid
    assert "wrong token (via header)" in log and "not-the-token" not in log
    assert "query string is not accepted" in log
    assert daemon.token not in log


async def test_repeated_wrong_tokens_get_429_for_a_while(daemon):
    for i in range(5):
        assert (await refused(daemon, token=f"guess-number-{i}-" + "q" * 20)).response.status_code == 401
    blocked = await refused(daemon)  # even the right token, from this user
    assert blocked.response.status_code == 429
    assert int(blocked.response.headers["Retry-After"]) > 0
    assert "refusing this user for 120s" in daemon.log()
    assert "guess-number" not in daemon.log()
    assert RawConnection(daemon.socket).call("daemon.ping")["result"]["pong"]  # Unix is unaffected


def test_tls(daemon_factory, tmp_root):
    openssl = require_tool("openssl")
    cert, key = tmp_root / "cert.pem", tmp_root / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    d = daemon_factory({"CCXD_WS_TLS_CERT": str(cert), "CCXD_WS_TLS_KEY": str(key)})
    assert d.ws_url.startswith("wss://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(cert))

    async def session() -> None:
        ws = await ws_open(d, ssl=ctx)
        assert (await Peer(ws).result("daemon.ping"))["pong"] is True
        await ws.close()
        plain = d.ws_url.replace("wss://", "ws://")
        with pytest.raises((OSError, WebSocketException, asyncio.TimeoutError)):
            async with connect(
                plain, open_timeout=5, additional_headers={"Authorization": f"Bearer {d.token}"}
            ):
                pass

    asyncio.run(session())

    async def library() -> bytes:
        # The client library's own WebSocket reader, over TLS.
        client = await client_connect(d.ws_url, token=d.token, cafile=str(cert), reconnect=False)
        got = bytearray()
        async for ev in client.run("head -c 300000 /dev/zero; echo done", binary=True):
            if isinstance(ev, OutputChunk):
                got.extend(ev.raw())
        await client.close()
        return bytes(got)

    # Both event loops the library meets: asyncio's own and uvloop (ccxctl's).
    assert asyncio.run(library()) == bytes(300000) + b"done\n"
    assert uvloop.run(library()) == bytes(300000) + b"done\n"
    with urllib.request.urlopen(d.http_url + "/health", context=ctx, timeout=10) as res:
        assert json.loads(res.read())["status"] == "healthy"


async def test_foreign_origins_are_refused_and_allowed_ones_accepted(daemon_factory):
    d = daemon_factory({"CCXD_WS_ALLOWED_ORIGINS": "https://app.example, http://localhost:3000"})
    evil = await refused(d, additional_headers={"Origin": "https://evil.example"})
    assert evil.response.status_code == 403
    ws = await ws_open(d, additional_headers={"Origin": "https://app.example"})
    assert (await Peer(ws).result("daemon.ping"))["pong"] is True
    await ws.close()
    assert "Origin 'https://evil.example' is not in ws_allowed_origins" in d.log()


async def test_by_default_no_browser_origin_is_allowed(daemon):
    assert (await refused(daemon, additional_headers={"Origin": daemon.http_url})).response.status_code == 403


# -- start-up refusals --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CCXD_WS_HOST": "0.0.0.0", "CCXD_WS_AUTH": "false"}, "ws_auth = false"),
        ({"CCXD_WS_HOST": "::", "CCXD_WS_AUTH": "0"}, "non-loopback ws_host"),
        ({"CCXD_WS_TLS_CERT": "/nonexistent/c.pem", "CCXD_WS_TLS_KEY": "/nonexistent/k.pem"}, "ws_tls_cert"),
        ({"CCXD_WS_TLS_CERT": "/nonexistent/c.pem"}, "set together"),
    ],
)
def test_insecure_or_broken_websocket_settings_refuse_to_start(daemon_factory, env, needle):
    assert needle in refusal(daemon_factory(env, start=False))


def test_an_unusable_token_file_or_a_taken_port_refuse_to_start(daemon_factory):
    d = daemon_factory(start=False)
    d.token_path.parent.mkdir(mode=0o700, parents=True)
    d.token_path.write_text("\n")
    assert "does not hold a usable token" in refusal(d)

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        message = refusal(daemon_factory({"CCXD_WS_PORT": str(port)}, start=False))
    assert f"cannot listen on 127.0.0.1:{port}" in message


def test_auth_off_on_loopback_starts_and_says_so(daemon_factory):
    d = daemon_factory({"CCXD_WS_AUTH": "false"})
    assert f"WebSocket authentication is off for uid {os.getuid()}" in d.log()
    # The token exists all the same: other local users need it (tests/security/test_loopback.py).
    assert stat.S_IMODE(d.token_path.stat().st_mode) == 0o600


# -- limits -------------------------------------------------------------------


async def test_a_message_over_the_limit_closes_with_1009(daemon):
    ws = await ws_open(daemon)
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon.ping", "params": {"x": "a" * (1 << 20)}})
    await ws.send(big)
    closed = await closed_by_server(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    assert RawConnection(daemon.socket).call("daemon.ping")["result"]["pong"]


async def test_malformed_json_gets_32700_and_the_connection_stays(daemon):
    ws = await ws_open(daemon)
    peer = Peer(ws)
    await peer.recv()  # connected
    await ws.send('{"jsonrpc": "2.0", "id": 1, "method": ')
    reply = await peer.recv()
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    await ws.send(b"\xff\xfe not utf-8")
    assert (await peer.recv())["error"]["code"] == -32700
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": "abc", "method": "no.such"}))
    reply = await peer.recv()
    assert reply["error"]["code"] == -32601 and reply["id"] == "abc"
    assert (await peer.result("daemon.ping"))["pong"] is True
    await ws.close()


async def test_connection_limit(daemon_factory):
    d = daemon_factory({"CCXD_MAX_CONNECTIONS": "2"})
    a, b = await ws_open(d), await ws_open(d)
    assert (await refused(d)).response.status_code == 503
    await a.close()
    await a.wait_closed()
    for _ in range(100):  # the server notices the close right after the closing handshake
        try:
            c = await ws_open(d)
            break
        except InvalidStatus:
            await asyncio.sleep(0.01)
    assert (await Peer(c).result("daemon.ping"))["pong"]
    await b.close()
    await c.close()


async def test_idle_connections_close_but_followers_stay(daemon_factory):
    d = daemon_factory({"CCXD_WS_IDLE_TIMEOUT": "0.5"})
    idle, busy = await ws_open(d), await ws_open(d)
    follower = Peer(busy)
    job = await follower.result("job.start", {"command": "sleep 30", "subscribe": True})
    closed = await closed_by_server(idle)
    assert closed.rcvd is not None and closed.rcvd.code == 1000 and closed.rcvd.reason == "idle timeout"
    assert (await follower.result("daemon.ping"))["pong"]  # still open
    await follower.result("job.cancel", {"job_id": job["id"]})
    await busy.close()


# -- one dispatcher, two transports -------------------------------------------


def gated_command(tmp: Path, name: str) -> tuple[str, bytes, bytes, Path]:
    """A job printing part 1, waiting for a gate file, then part 2 and some stderr."""
    part1 = os.urandom(150_000) + "héllo\n".encode()
    part2 = b"\xff\xfe" + os.urandom(200_000)
    err = b"warn\x00\xc3"
    for suffix, data in (("1", part1), ("2", part2), ("e", err)):
        (tmp / f"{name}.{suffix}").write_bytes(data)
    gate = tmp / f"{name}.gate"
    cmd = (
        f"cat {tmp}/{name}.1; while [ ! -e {gate} ]; do sleep 0.01; done; "
        f"cat {tmp}/{name}.2; cat {tmp}/{name}.e >&2"
    )
    return cmd, part1 + part2, err, gate


async def follow_bytes(client, job_id: str, gate: Path, first: int) -> tuple[bytes, bytes, int]:
    out, err = bytearray(), bytearray()
    code = None
    async for ev in client.follow(job_id):
        if isinstance(ev, OutputChunk):
            (out if ev.stream == "stdout" else err).extend(ev.raw())
            if len(out) >= first and not gate.exists():
                gate.touch()  # part 1 arrived live: let the job go on
        elif isinstance(ev, JobFinished):
            code = ev.job.exit_code
    assert code is not None
    return bytes(out), bytes(err), code


async def test_a_job_started_on_one_transport_is_followed_byte_exact_on_the_other(daemon, tmp_root):
    unix = await client_connect(daemon.socket)
    ws = await client_connect(daemon.ws_url, token=daemon.token, reconnect=False)
    try:
        for starter, follower, name in ((unix, ws, "u2w"), (ws, unix, "w2u")):
            cmd, expected_out, expected_err, gate = gated_command(tmp_root, name)
            job = await starter.start(cmd)
            out, err, code = await follow_bytes(follower, job.id, gate, 150_000)
            assert code == 0
            assert hashlib.sha256(out).hexdigest() == hashlib.sha256(expected_out).hexdigest()
            assert err == expected_err
            # The starter sees the same record.
            assert (await starter.get(job.id)).output_bytes == len(expected_out) + len(expected_err)
    finally:
        await unix.close()
        await ws.close()


async def test_binary_output_frames_decode_to_the_exact_bytes(daemon, tmp_root):
    path = tmp_root / "random.bin"
    cmd = f"head -c 700000 /dev/urandom > {path}; cat {path}; printf 'E\\377E' >&2"
    ws = await ws_open(daemon)
    peer = Peer(ws)
    job = await peer.result("job.start", {"command": cmd, "subscribe": True, "binary": True})
    out, err = hashlib.sha256(), bytearray()
    offset = 0
    events = []
    while True:
        msg = await peer.recv()
        if isinstance(msg, bytes):
            frame = unpack_output_frame(msg)
            assert frame.job_id == job["id"] and frame.offset == offset
            offset += len(frame.data)
            if frame.stream == "stdout":
                out.update(frame.data)
            else:
                err.extend(frame.data)
        else:
            events.append(msg.get("method"))
            if msg.get("method") == "job.finished":
                break
    assert "job.output" not in events and "job.started" in events
    assert out.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert bytes(err) == b"E\xffE"

    # job.subscribe with binary replays the finished job the same way.
    await peer.result("job.subscribe", {"job_id": job["id"], "binary": True})
    replay = hashlib.sha256()
    while True:
        msg = await peer.recv()
        if isinstance(msg, bytes):
            frame = unpack_output_frame(msg)
            if frame.stream == "stdout":
                replay.update(frame.data)
        elif msg.get("method") == "job.finished":
            break
    assert replay.hexdigest() == out.hexdigest()
    await ws.close()

    # The client library understands binary frames too.
    client = await client_connect(daemon.ws_url, token=daemon.token, reconnect=False)
    got = bytearray()
    async for ev in client.run(f"cat {path}", binary=True):
        if isinstance(ev, OutputChunk):
            got.extend(ev.raw())
    await client.close()
    assert hashlib.sha256(got).hexdigest() == out.hexdigest()


async def test_binary_frames_carry_several_chunks_of_one_stream_to_a_reader_that_fell_behind(daemon, tmp_root):
    # Several chunks that are ready share a frame (written by ccxd, not the library); the
    # `websockets` client checks every frame against RFC 6455 while this test checks the bytes.
    path = tmp_root / "random.bin"
    path.write_bytes(os.urandom(600_000))
    cmd = f"for i in 1 2 3; do cat {path}; cat {path} >&2; done; printf tail"
    unix = RawConnection(daemon.socket)
    ws = await ws_open(daemon, max_queue=1)
    peer = Peer(ws)
    job = await peer.result("job.start", {"command": cmd, "subscribe": True, "binary": True})
    # Read nothing until the job has ended: the daemon must hold back (drain), not drop.
    unix.call("job.subscribe", {"job_id": job["id"], "output": False})
    while (note := unix.recv()).get("method") != "job.finished":
        pass
    streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    sizes: list[int] = []
    offset = 0
    while True:
        msg = await peer.recv()
        if isinstance(msg, bytes):
            frame = unpack_output_frame(msg)
            assert frame.job_id == job["id"] and frame.offset == offset
            offset += len(frame.data)
            sizes.append(len(frame.data))
            streams[frame.stream].extend(frame.data)
        elif msg.get("method") == "job.finished":
            break
    await ws.close()
    assert note["params"]["job"]["output_bytes"] == offset == 3_600_000 + 4
    data = path.read_bytes()
    assert bytes(streams["stdout"]) == data * 3 + b"tail"
    assert bytes(streams["stderr"]) == data * 3
    assert max(sizes) > 64 * 1024, "no frame carried more than one chunk"
    assert max(sizes) <= FRAME_BYTES + 64 * 1024
    assert len(sizes) < 3_600_000 // (64 * 1024)


def test_the_binary_frame_layout():
    frame = encode_output_frame("abc", "stderr", 7, 1 << 40, b"\x00\xff")
    assert (
        frame[:20]
        == bytes([1, 1]) + (7).to_bytes(8, "little") + (1 << 40).to_bytes(8, "little") + b"\x03\x00"
    )
    assert frame[20:] == b"abc\x00\xff"
    chunk = decode_output_frame(frame)
    assert (chunk.job_id, chunk.stream, chunk.seq, chunk.offset, chunk.raw()) == (
        "abc",
        "stderr",
        7,
        1 << 40,
        b"\x00\xff",
    )
    for bad in (b"", b"\x02" + frame[1:], frame[:22], b"\x01\x05" + frame[2:]):
        with pytest.raises(ValueError):
            unpack_output_frame(bad)


@given(
    st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyz", max_size=40),
    st.sampled_from([0, 1]),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=300),
)
def test_binary_frames_round_trip(job_id, stream, seq, offset, data):
    f = unpack_output_frame(encode_output_frame(job_id, stream, seq, offset, data))
    assert (f.job_id, f.stream, f.seq, f.offset, f.data) == (
        job_id,
        ("stdout", "stderr")[stream],
        seq,
        offset,
        data,
    )


# -- slow readers -------------------------------------------------------------


async def test_a_reader_that_stops_reading_holds_up_no_job_and_no_memory(daemon_factory):
    # History keeps no output here: its write-behind buffers would blur the measurement.
    daemon = daemon_factory({"CCXD_STORE_OUTPUT_MAX_BYTES": "0"})
    size = 96_000_000
    command = f"yes | head -c {size}"
    proc = psutil.Process(daemon.proc.pid)
    unix = RawConnection(daemon.socket)

    def wait_finished(job_id: str) -> dict:
        unix.call("job.subscribe", {"job_id": job_id, "output": False})
        while (note := unix.recv()).get("method") != "job.finished":
            pass
        return note["params"]["job"]

    # The same job without a WebSocket reader first: what it costs by itself (history,
    # allocator high-water) is not what this test measures.
    wait_finished(unix.call("job.start", {"command": command})["result"]["id"])
    ws = await ws_open(daemon, max_queue=1)
    peer = Peer(ws)
    before = proc.memory_info().rss
    job = await peer.result("job.start", {"command": command, "subscribe": True})
    # The job runs to its end while this client reads nothing.
    info = wait_finished(job["id"])
    assert info["exit_code"] == 0 and info["output_bytes"] == size
    grown = proc.memory_info().rss - before
    assert grown < 32 * 1024 * 1024, f"the daemon grew by {grown >> 20} MiB for one stalled reader"
    # Now it reads and gets every byte (from memory, then the spool).
    digest, total = hashlib.sha256(), 0
    while True:
        msg = await peer.recv()
        if isinstance(msg, dict) and msg.get("method") == "job.output":
            data = msg["params"]["data"].encode()
            assert msg["params"]["offset"] == total
            digest.update(data)
            total += len(data)
        elif isinstance(msg, dict) and msg.get("method") == "job.finished":
            break
    assert total == size
    assert digest.hexdigest() == hashlib.sha256(b"y\n" * (size // 2)).hexdigest()
    await ws.close()


# -- fuzzing ------------------------------------------------------------------

UNSAFE = {"job.start", "job.cancel", "job.signal", "job.pause", "job.resume", "history.prune", "daemon.shutdown"}
SAFE_METHODS = [*sorted(set(METHODS) - UNSAFE), "pong", "hook_status", "no.such", "", "execute."]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]),
        "method": st.sampled_from(SAFE_METHODS) | st.text(max_size=12),
    },
    optional={
        "params": json_values,
        "id": st.integers() | st.text(max_size=6) | st.none() | st.floats(allow_nan=False) | st.booleans(),
    },
)
frames = st.one_of(
    st.binary(max_size=400).map(lambda b: b),
    st.text(max_size=400),
    requests.map(json.dumps),
    st.lists(requests, max_size=4).map(json.dumps),
    st.builds(lambda r, cut: json.dumps(r)[:cut], requests, st.integers(0, 60)),
)


def test_fuzzed_frames_get_valid_replies_and_the_daemon_stays_up(daemon):
    url = daemon.ws_url
    headers = {"Authorization": f"Bearer {daemon.token}"}
    counter = itertools.count()
    with sync_connect(
        url, additional_headers=headers, max_size=None, compression=None, open_timeout=10
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["method"] == "connected"

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frames)
        def check(frame: bytes | str) -> None:
            marker = f"fz-{next(counter)}"
            ws.send(frame)
            ws.send(json.dumps({"jsonrpc": "2.0", "id": marker, "method": "daemon.ping"}))
            while True:
                msg = json.loads(ws.recv(timeout=10))
                if isinstance(msg, list):
                    assert msg, "an empty batch reply"
                    for item in msg:
                        assert_response(item)
                    continue
                if isinstance(msg, dict) and msg.get("method") in ("ping", "job.finished"):
                    continue
                assert_response(msg)
                if msg["id"] == marker:
                    assert msg["result"]["pong"] is True
                    return

        check()
    assert next(counter) >= 200  # hypothesis really sent that many frames
    assert daemon.proc.poll() is None
    assert RawConnection(daemon.socket).call("daemon.ping")["result"]["pong"]

    async def again() -> None:
        ws2 = await ws_open(daemon)
        assert (await Peer(ws2).result("daemon.ping"))["pong"] is True
        await ws2.close()

    asyncio.run(again())
