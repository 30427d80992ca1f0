"""Every way of not reaching the daemon is one line from ccxctl, never a traceback.

Real sockets: a path with nothing there, a socket nobody listens on
(ECONNREFUSED), a closed TCP port, and servers that hang up, reset or talk
nonsense in the middle of a request.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

EX_NOT_RUNNING = 69


def ccxctl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )


def one_line(res: subprocess.CompletedProcess[bytes]) -> str:
    err = res.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccxctl: "), err
    assert "unexpected error" not in lines[0], err  # the last resort is for bugs, not for a daemon away
    return lines[0]


# Both ways into the daemon: `run` takes the blocking fast path, `status` the async client.
COMMANDS = [("run", "true"), ("status",)]


@pytest.fixture
def sock_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    return d


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_no_socket_at_the_path(sock_dir: Path, cmd):
    res = ccxctl("--socket", str(sock_dir / "ccxd.sock"), *cmd)
    line = one_line(res)
    assert res.returncode == EX_NOT_RUNNING, line
    assert f"ccxd is not running (no socket at {sock_dir / 'ccxd.sock'})" in line and "start it with" in line


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_socket_nobody_listens_on(sock_dir: Path, cmd):
    path = sock_dir / "ccxd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: connect() gets ECONNREFUSED
        res = ccxctl("--socket", str(path), *cmd)
    line = one_line(res)
    assert res.returncode == EX_NOT_RUNNING and "nothing listens on" in line, line


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_closed_port(cmd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        res = ccxctl("--url", f"ws://127.0.0.1:{port}/ws", *cmd)
    line = one_line(res)
    assert res.returncode == EX_NOT_RUNNING and "cannot connect to" in line, line


class Misbehaving:
    """A Unix socket server that reads a request and then does ``how``."""

    def __init__(self, path: Path, how: str) -> None:
        self.path, self.how = path, how
        self.requests = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(8)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                if self.how == "reset":
                    # Closing with the request half read: the kernel resets the connection (ECONNRESET).
                    self.requests += bool(conn.recv(1))
                    continue
                data = b""
                while b"\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                if not data:
                    continue
                self.requests += 1
                if self.how == "garbage":
                    conn.sendall(b"<html>this is not ccxd</html>\n")
                elif self.how == "half":
                    conn.sendall(b'{"jsonrpc":"2.0","id":1,"res')

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def misbehaving(sock_dir: Path) -> Iterator:  # type: ignore[type-arg]
    servers: list[Misbehaving] = []

    def start(how: str) -> Misbehaving:
        s = Misbehaving(sock_dir / f"{how}.sock", how)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize("how", ["close", "half", "reset", "garbage"])
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0])
def test_a_server_that_fails_mid_request(misbehaving, how: str, cmd):
    server = misbehaving(how)
    res = ccxctl("--socket", str(server.path), *cmd)
    line = one_line(res)
    assert res.returncode == 1, line
    assert server.requests >= 1  # it did fail in the middle of a request
    expected = {
        "close": ("closed the connection", "connection to the daemon lost", "lost the connection"),
        "half": ("closed the connection", "connection to the daemon lost", "lost the connection"),
        "reset": ("connection to the daemon lost", "lost the connection"),
        "garbage": ("not its protocol", "not ccxd's protocol"),
    }[how]
    assert any(e in line for e in expected) and "unexpected error" not in line, line


def test_a_websocket_server_that_hangs_up_during_the_handshake():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]

        def hang_up() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                conn.recv(65536)
                conn.close()

        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        runs = [ccxctl("--url", f"ws://127.0.0.1:{port}/ws", *cmd) for cmd in COMMANDS]
        t.join(10)
    for res in runs:
        line = one_line(res)
        assert res.returncode == 1 and "closed during the handshake" in line, line
