"""Another local user holds idle TCP connections to the WebSocket port: the victim loses nothing.

Issue 19: three processes of another uid holding 2,100 idle connections (no
token, sending nothing) took the daemon to its descriptor limit; ``ccxctl run``
failed with tracebacks and a job that exited 0 was recorded killed with no
output.  Here the daemon runs with a limit of 256 descriptors, so 3 x 100
connections are the same attack; the attacker is the real ``ccxd-attacker``
uid (see conftest.py), connecting over loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess
from tests.security.conftest import ATTACKER, SYSTEM_PYTHON, ccxctl, victim_env

FD_LIMIT = 256
FLOODERS = 3
CONNECTIONS_EACH = 100


def rpc(d: DaemonProcess, method: str, params: dict[str, object] | None = None) -> dict[str, object]:
    """One JSON-RPC call over the Unix socket (as the victim)."""
    msg = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(d.socket))
        sock.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the connection")
            buf += data
    reply = json.loads(buf.split(b"\n", 1)[0])
    assert "result" in reply, reply
    return reply["result"]  # type: ignore[no-any-return]


def fds(pid: int) -> list[str]:
    """What the process holds open."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def finished(d: DaemonProcess, job_id: str) -> dict[str, object]:
    """The job's record once it has finished (it ends on its own within seconds)."""
    deadline = time.monotonic() + 30
    while True:
        info = rpc(d, "job.get", {"job_id": job_id})
        if info["state"] == "finished" or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


class Flooder:
    """flooder.py run as the attacker: COUNT idle connections, re-opened when the daemon closes them."""

    def __init__(self, lair: Path, port: int, count: int) -> None:
        self.proc = subprocess.Popen(
            [
                "runuser",
                "-u",
                ATTACKER,
                "--",
                SYSTEM_PYTHON,
                str(lair / "flooder.py"),
                "127.0.0.1",
                str(port),
                str(count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd="/",
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY "), line

    def stop(self) -> tuple[int, int, int]:
        """(connections made, closed by the daemon, connects that failed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read().decode()
        self.proc.wait(30)
        _, made, closed, failed = out.split()
        return int(made), int(closed), int(failed)


@pytest.fixture
def flood_lair(lair: Path) -> Path:
    shutil.copyfile(Path(__file__).with_name("flooder.py"), lair / "flooder.py")
    os.chmod(lair / "flooder.py", 0o755)
    return lair


@pytest.mark.parametrize(
    "caps",
    [
        pytest.param({}, id="default-caps"),
        # No handshake caps to speak of: the descriptor reserve alone must hold.
        pytest.param(
            {"CCXD_WS_HANDSHAKES_MAX": "100000", "CCXD_WS_HANDSHAKES_PER_PEER": "100000"}, id="reserve-only"
        ),
    ],
)
def test_idle_connections_of_another_user_cost_the_victim_nothing(
    daemon_factory, flood_lair: Path, attacker: int, caps: dict[str, str]
):
    d: DaemonProcess = daemon_factory(extra_env={"CCXD_WS_IDLE_TIMEOUT": "3600", **caps}, start=False)
    d.command = ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--", sys.executable, "-m", "ccxd"]
    d.start()
    assert d.proc is not None
    pid = d.proc.pid
    env = victim_env(XDG_RUNTIME_DIR=str(d.runtime))
    # What the daemon holds once it has run a job (its shim pool, the store writer's connection).
    assert ccxctl("run", "true", env=env).returncode == 0
    baseline = fds(pid)

    # A job that runs through the attack and ends in the middle of it.
    started = ccxctl("run", "--detach", "sleep 1.5; echo survived-the-flood", env=env)
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.decode().strip()

    flooders = [Flooder(flood_lair, d.ws_port, CONNECTIONS_EACH) for _ in range(FLOODERS)]
    try:
        runs = [ccxctl("run", "echo ok", env=env) for _ in range(12)]
        info = finished(d, job_id)
        during = rpc(d, "daemon.status")
        shown = ccxctl("status", env=env)
    finally:
        stats = [f.stop() for f in flooders]

    for res in runs:
        out = (res.stdout + res.stderr).decode(errors="replace")
        assert "Traceback" not in out, out
        assert res.returncode == 0 and res.stdout == b"ok\n", out
    assert (info["state"], info["reason"], info["exit_code"]) == ("finished", "exited", 0), info
    assert info["output_bytes"] == len(b"survived-the-flood\n"), info
    assert info.get("output_lost") is None and not info.get("output_cut"), info
    output = rpc(d, "job.read", {"job_id": job_id})
    assert "survived-the-flood" in json.dumps(output), output
    # The attack did happen, and was turned away where it started.
    made = sum(s[0] for s in stats)
    assert made >= FLOODERS * CONNECTIONS_EACH // 2, stats
    refused = during["refused"]
    assert isinstance(refused, dict), during
    assert refused["ws_handshakes"] + refused["ws_peer"] + refused["ws_descriptors"] > 0, refused
    assert refused["unix_descriptors"] == 0, refused
    logged = [line for line in d.log().splitlines() if "before their handshake" in line]
    assert logged and "from 127.0.0.1" in logged[0], d.log()[-3000:]
    lines = shown.stdout.decode().splitlines()
    assert f"descriptors\tlimit {FD_LIMIT}" in lines, lines
    assert any(line.startswith("turned away\t") and "WebSocket connections before login" in line for line in lines)

    # The daemon is up and gives back every descriptor once the attacker is gone.
    deadline = time.monotonic() + 20
    while len(fds(pid)) > len(baseline) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(fds(pid)) <= len(baseline), (baseline, fds(pid))
    assert d.proc.poll() is None
    assert rpc(d, "daemon.ping")["pong"] is True
    # Every place the attacker held was given back: the victim logs in over the WebSocket.
    ws = ccxctl("--url", d.ws_url, "--token-file", str(d.token_path), "run", "echo over-ws", env=env)
    assert (ws.returncode, ws.stdout) == (0, b"over-ws\n"), ws.stderr
    assert "Traceback" not in d.log()


def test_ccxctl_says_in_one_line_that_the_daemon_is_out_of_descriptors(daemon_factory):
    """When the daemon really is out of descriptors (here its own user's connections took them),
    ccxctl says so in one line: no traceback, no bare "Broken pipe"."""
    d: DaemonProcess = daemon_factory(start=False)
    d.command = ["prlimit", "--nofile=64:64", "--", sys.executable, "-m", "ccxd"]
    d.start()
    env = victim_env(XDG_RUNTIME_DIR=str(d.runtime))
    held: list[socket.socket] = []
    refused = b""
    try:
        for _ in range(100):  # until the daemon turns one away
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(str(d.socket))
            sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping"}\n')
            reply = sock.recv(65536)
            if b'"id":null' in reply:
                refused = reply
                sock.close()
                break
            held.append(sock)
        assert b"out of file descriptors" in refused, (len(held), refused)
        for args in (["run", "echo never"], ["status"]):
            res = ccxctl(*args, env=env)
            err = res.stderr.decode(errors="replace")
            assert "Traceback" not in err and res.returncode != 0, err
            assert len(err.splitlines()) == 1 and err.startswith("ccxctl: "), err
            if args[0] == "run":  # the fast path reads the daemon's line (the client library does not yet)
                assert err == "ccxctl: ccxd is out of file descriptors: connection refused, retry later\n", err
    finally:
        for sock in held:
            sock.close()
    res = ccxctl("run", "echo ok", env=env)
    assert (res.returncode, res.stdout) == (0, b"ok\n"), res.stderr


def test_a_connection_that_does_not_log_in_is_dropped_after_the_handshake_timeout(daemon_factory, attacker: int):
    """The attacker connects and sends nothing, or half a request: ws_handshake_timeout ends both."""
    d: DaemonProcess = daemon_factory(extra_env={"CCXD_WS_HANDSHAKE_TIMEOUT": "1"})
    script = (
        "import socket, sys, time\n"
        "socks = [socket.create_connection(('127.0.0.1', int(sys.argv[1]))) for _ in range(2)]\n"
        "socks[1].sendall(b'GET /ws HTTP/1.1\\r\\nHost: x\\r\\n')  # never finished\n"
        "t = time.monotonic()\n"
        "for s in socks:\n"
        "    s.settimeout(30)\n"
        "    assert s.recv(4096) == b'', 'the daemon answered'\n"
        "print(round(time.monotonic() - t, 1))\n"
    )
    res = subprocess.run(
        ["runuser", "-u", ATTACKER, "--", SYSTEM_PYTHON, "-c", script, str(d.ws_port)],
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) < 5, res.stdout  # 1 s, where websockets' own default was 10
    status = rpc(d, "daemon.status")
    assert status["connections"] <= 1, status


def test_the_daemon_raises_its_descriptor_limit_and_its_jobs_get_the_one_it_was_given(daemon_factory):
    d: DaemonProcess = daemon_factory(start=False)
    d.command = ["prlimit", "--nofile=512:4096", "--", sys.executable, "-m", "ccxd"]
    d.start()
    assert rpc(d, "daemon.status")["fd_limit"] == 4096
    assert "file-descriptor limit: 4096 (raised from 512" in d.log()
    res = ccxctl("run", "ulimit -Sn; ulimit -Hn", env=victim_env(XDG_RUNTIME_DIR=str(d.runtime)))
    assert (res.returncode, res.stdout) == (0, b"512\n4096\n"), res.stderr
