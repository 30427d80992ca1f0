"""The client library reconnects after a dropped connection and resumes followed jobs exactly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ccxd.client import ClientError, connect
from ccxd.client.connection import ConnectionLost
from ccxd.protocol import JobFinished, JobInfo, OutputChunk
from ccxd.supervision.shim import find_shim
from tests.conftest import REQUIRE_TOOLS
from tests.helpers import job_pids


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


# -- the daemon SIGKILLed and restarted under followers (issue 21) -----------------

CYCLES = 10
# Prints "line N" every 50 ms until the file GO exists, then "done" and exit 7.
TICKER = "i=0; while [ ! -e {go} ]; do echo line $i; i=$((i+1)); sleep 0.05; done; echo done; exit 7"
TICK = re.compile(rb"line (\d+)\n")


def assert_ticks(out: bytes) -> int:
    """``out`` is "line 0\\n" … "line N\\n" "done\\n": every line exactly once; return N+1."""
    assert out.endswith(b"done\n"), out[-200:]
    lines = out[: -len(b"done\n")].split(b"\n")
    assert lines[-1] == b"", "output ends mid-line"
    numbers = [int(TICK.fullmatch(line + b"\n").group(1)) for line in lines[:-1]]  # type: ignore[union-attr]
    assert numbers == list(range(len(numbers))), "a line is missing or repeated"
    return len(numbers)


@pytest.fixture
def _shim() -> None:
    if find_shim() is None:
        message = "ccxd-shim is not built (python -m ccxd.supervision.shim)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


def _lines(out: bytes | bytearray) -> int:
    return out.count(b"\n")


async def _until(check, timeout: float, why) -> None:
    """Wait (polling output: there is no event to wait on) until ``check()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, why()
        await asyncio.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

def _end_tickers(go: Path) -> None:
    """Let the test's jobs end (they poll ``go``), and kill what still runs after a bound.

    A job under its shim outlives a daemon killed for good; the test's directory goes
    right after the test, and a loop that missed ``go`` would run on forever.
    """
    go.touch()
    deadline = time.monotonic() + 10
    while True:
        left = [p for p in psutil.process_iter(["cmdline"]) if str(go) in " ".join(p.info["cmdline"] or ())]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling /proc: a process of another session has no event to wait on
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()



@pytest.mark.timeout(120)
@pytest.mark.usefixtures("_shim")
@pytest.mark.parametrize("transport", ["unix", "websocket"])
async def test_followers_resume_across_daemon_kills(daemon_factory, tmp_root, caplog, transport):
    """`ccxctl attach` and the client's run() follow jobs across 10 SIGKILLs and restarts."""
    root = tmp_root / "d"
    # Over WebSocket, every daemon listens on the same port (as a configured one would).
    env = {"CCXD_WS_PORT": str(_free_port())} if transport == "websocket" else {}
    d = daemon_factory(root=root, extra_env=env)
    go = tmp_root / "go"
    if transport == "websocket":
        where, via = d.ws_url, ["--url", d.ws_url, "--token-file", str(d.token_path)]
        client = await connect(where, token_file=d.token_path, reconnect_timeout=30)
    else:
        where, via = str(d.socket), ["--socket", str(d.socket)]
        client = await connect(where, reconnect_timeout=30)
    attached = await client.start(TICKER.format(go=go))
    out_path, err_path = tmp_root / "attach.out", tmp_root / "attach.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        attach = subprocess.Popen(
            [sys.executable, "-m", "ccxctl", *via, "attach", attached.id],
            env=d.env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    ran = bytearray()
    finished: list[JobInfo] = []

    async def run() -> None:
        async for ev in client.run(TICKER.format(go=go)):
            if isinstance(ev, OutputChunk):
                ran.extend(ev.raw())
            elif isinstance(ev, JobFinished):
                finished.append(ev.job)

    runner = asyncio.get_running_loop().create_task(run())
    try:
        for cycle in range(CYCLES):
            seen = (_lines(out_path.read_bytes()), _lines(ran))

            def why(cycle: int = cycle) -> str:
                return (
                    f"cycle {cycle}: a follower did not resume within 15 s: attach printed "
                    f"{_lines(out_path.read_bytes())} lines (exit {attach.poll()}), run() {_lines(ran)}; "
                    f"attach said: {err_path.read_bytes()[-500:]!r}"
                )

            # Both followers print again: they resumed (the first time: they started).
            def resumed(seen: tuple[int, int] = seen) -> bool:
                return _lines(out_path.read_bytes()) >= seen[0] + 2 and _lines(ran) >= seen[1] + 2

            await _until(resumed, 15, why)
            d.stop(signal.SIGKILL)
            if cycle % 3 == 1:
                await asyncio.sleep(0.5)  # a daemon away a while, not only a quick restart
            d = await asyncio.to_thread(daemon_factory, root=root, extra_env=env)
        go.touch()
        await asyncio.wait_for(runner, 15)
        code = await asyncio.to_thread(attach.wait, 15)
    finally:
        if attach.poll() is None:
            attach.kill()
        runner.cancel()
        await client.close()
        await asyncio.to_thread(_end_tickers, go)
    err_text = err_path.read_bytes()
    assert err_text == b"", err_text  # no "Future exception was never retrieved", no traceback
    assert code == 7
    assert_ticks(out_path.read_bytes())
    assert assert_ticks(bytes(ran)) > 0
    assert finished and finished[0].exit_code == 7
    assert client.reconnects >= CYCLES
    gc.collect()  # a future whose exception nobody retrieved is reported when collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.usefixtures("_shim")
async def test_followers_give_up_on_a_daemon_that_stays_away(daemon_factory, tmp_root):
    """No daemon for longer than the reconnect bound: one line and exit 1, never a hang."""
    d = daemon_factory(root=tmp_root / "d")
    go = tmp_root / "go"
    client = await connect(d.socket, reconnect_timeout=1)
    job = await client.start(TICKER.format(go=go))
    out_path = tmp_root / "attach.out"
    with open(out_path, "wb") as out:
        attach = subprocess.Popen(
            [sys.executable, "-m", "ccxctl", "attach", job.id],
            env=dict(d.env, CCXD_SOCKET=str(d.socket), CCXD_RECONNECT_TIMEOUT="2"),
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
    got = bytearray()

    async def follow() -> None:
        async for ev in client.follow(job.id):
            if isinstance(ev, OutputChunk):
                got.extend(ev.raw())

    follower = asyncio.get_running_loop().create_task(follow())
    try:
        await _until(lambda: _lines(out_path.read_bytes()) >= 2 and _lines(got) >= 2, 15, lambda: "no output")
        killed = time.monotonic()
        d.stop(signal.SIGKILL)
        with pytest.raises(ClientError, match=r"^lost the daemon at unix:.*: gave up after 1 s$"):
            await asyncio.wait_for(follower, 10)
        assert time.monotonic() - killed < 1 + 2  # the bound, and the last try's back-off
        _, err = await asyncio.to_thread(attach.communicate, timeout=10)
        waited = time.monotonic() - killed
    finally:
        if attach.poll() is None:
            attach.kill()
        await client.close()
        await asyncio.to_thread(_end_tickers, go)
    assert attach.returncode == 1
    assert err.decode() == f"ccxctl: lost the daemon at unix:{d.socket}: gave up after 2 s\n"
    assert 2 <= waited < 2 + 3


@pytest.mark.usefixtures("_shim")
def test_run_on_a_daemon_killed_says_how_to_follow_the_job_again(daemon_factory, tmp_root):
    """``ccxctl run``'s fast path does not reconnect: one line naming the job to attach to, exit 1."""
    d = daemon_factory(root=tmp_root / "d")
    go = tmp_root / "go"
    run = subprocess.Popen(
        [sys.executable, "-m", "ccxctl", "--socket", str(d.socket), "run", TICKER.format(go=go)],
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert run.stdout is not None
        assert run.stdout.readline() == b"line 0\n"
        d.stop(signal.SIGKILL)
        _, err = run.communicate(timeout=15)
        line = err.decode()
        named = re.search(r"`ccxctl attach (\S+)` follows the job once ccxd is back\)\n$", line)
        assert named is not None, line
        assert job_pids(named.group(1)), "the job named is not running on"
    finally:
        if run.poll() is None:
            run.kill()
        _end_tickers(go)
    assert run.returncode == 1
    assert line.count("\n") == 1 and line.startswith(f"ccxctl: lost the connection to ccxd at {d.socket}: ")
