"""Socket activation: ccxd serves the sockets systemd passes and leaves them in place."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

from tests.helpers import RawConnection, run_job


def _listening_unix(path) -> socket.socket:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def test_the_passed_unix_socket_is_served_and_survives_the_daemon(daemon_factory, tmp_root):
    path = tmp_root / "d" / "run" / "ccxd" / "ccxd.sock"
    listener = _listening_unix(path)
    inode = path.stat().st_ino
    # A client that connects before the daemon runs (what starts it under systemd) is served.
    early = RawConnection(path)
    early.send({"jsonrpc": "2.0", "id": 7, "method": "daemon.ping"})
    d = daemon_factory(start=False, root=tmp_root / "d")
    d.activation = [(listener, "unix")]
    d.start()
    reply = early.recv()
    assert reply["id"] == 7 and reply["result"]["pong"] is True
    status = RawConnection(path).call("daemon.status")["result"]
    assert {"kind": "unix", "address": str(path)} in status["listeners"]
    assert "socket activation: unix socket from systemd (fd 3" in d.log()
    assert d.stop() == 0
    # The socket belongs to systemd: still there, the same one, still accepting.
    assert path.stat().st_ino == inode
    waiting = RawConnection(path)
    waiting.send({"jsonrpc": "2.0", "id": 8, "method": "daemon.ping"})
    # The next daemon (systemd starts it on that connection) answers the waiting client.
    again = daemon_factory(start=False, root=tmp_root / "d")
    again.activation = [(listener, "unix")]
    again.start()
    assert waiting.recv()["result"]["pong"] is True


async def test_jobs_inherit_neither_the_variables_nor_the_socket(daemon_factory, tmp_root):
    path = tmp_root / "d" / "run" / "ccxd" / "ccxd.sock"
    listener = _listening_unix(path)
    d = daemon_factory(start=False, root=tmp_root / "d")
    d.activation = [(listener, "unix")]
    d.start()
    client = await d.client()
    out, _, info, _ = await run_job(client, "env | grep ^LISTEN_; ls -l /proc/self/fd/; echo done")
    await client.close()
    text = out.decode()
    assert info.exit_code == 0 and text.endswith("done\n")
    assert "LISTEN_" not in text and "socket:" not in text


def test_the_passed_websocket_socket_is_served(daemon_factory, tmp_root):
    unix_path = tmp_root / "d" / "run" / "ccxd" / "ccxd.sock"
    unix = _listening_unix(unix_path)
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    d = daemon_factory(start=False, root=tmp_root / "d", extra_env={"CCXD_WS_PORT": "1"})
    d.activation = [(tcp, "websocket"), (unix, "unix")]
    d.start()
    assert d.ws_url == f"ws://127.0.0.1:{port}/ws"  # not ws_port: the socket systemd bound
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
        assert json.load(reply)["status"] == "healthy"


def test_without_activation_variables_for_another_pid_ccxd_binds_its_own(daemon_factory):
    d = daemon_factory(extra_env={"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"})
    assert RawConnection(d.socket).call("daemon.ping")["result"]["pong"]
    assert "socket activation" not in d.log()
