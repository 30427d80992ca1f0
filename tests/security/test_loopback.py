"""Loopback is not one user: another local user gets nothing of the victim's ccxd.

Every local user connects from 127.0.0.1.  Each attack here is made for real
by the ``ccxd-attacker`` uid (see conftest.py) with :mod:`tests.security.intruder`;
the victim is the test's own user, whose daemon serves on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

from tests.conftest import DaemonProcess, _status_listener
from tests.helpers import run_job
from tests.security.conftest import ATTACKER, SYSTEM_PYTHON, ccxctl, victim_env


def intrude(lair: Path, *args: str) -> list[dict]:
    """Run the intruder as the attacker; one dict per attempt."""
    script = lair / "intruder.py"
    if not script.exists():
        shutil.copyfile(Path(__file__).with_name("intruder.py"), script)
        os.chmod(script, 0o755)
    res = subprocess.run(
        ["runuser", "-u", ATTACKER, "--", SYSTEM_PYTHON, str(script), *args],
        capture_output=True,
        timeout=120,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr.decode()
    return [json.loads(line) for line in res.stdout.splitlines()]


def host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return str(parts.hostname), str(parts.port)


async def rpc(url: str, method: str, params: dict | None = None, token: str | None = None) -> dict:
    """One JSON-RPC call over the WebSocket, as the victim; its reply."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {}}))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("id") == 7:
                return reply


# -- ws_auth = false serves only the daemon's own user ------------------------------


async def test_auth_off_serves_the_owner_only_another_user_gets_401_and_runs_nothing(
    daemon_factory, lair: Path, tmp_root: Path, attacker: int
):
    d: DaemonProcess = daemon_factory({"CCXD_WS_AUTH": "false"})
    host, port = host_port(d.ws_url)
    marker = tmp_root / "attacker-was-here"
    [tried] = intrude(lair, "ws", host, port, str(marker))
    assert tried["status"] == 401, tried
    assert "bearer token is required" in tried["got"] and '"result"' not in tried["got"]
    # The victim, without a token as before, is served: and no job of the attacker's exists.
    listed = await rpc(d.ws_url, "job.list")
    assert listed["result"]["jobs"] == [], listed
    assert not marker.exists()
    mine = tmp_root / "victim-ran-this"
    started = await rpc(d.ws_url, "job.start", {"command": f"touch {mine}"})
    c = await d.client()
    await c.wait(started["result"]["id"])
    await c.close()
    assert mine.exists() and not marker.exists()
    assert f"refused 127.0.0.1 (uid {attacker}): no token" in d.log()
    # With the token, another user is let in as when ws_auth is on.
    [with_token] = intrude(lair, "ws", host, port, str(marker), d.token)
    assert with_token["status"] == 101, with_token


async def test_auth_off_mcp_over_http_refuses_another_user_and_opens_no_session(
    daemon_factory, lair: Path, attacker: int
):
    d: DaemonProcess = daemon_factory({"CCXD_WS_AUTH": "false"})
    host, port = host_port(d.ws_url)
    [tried] = intrude(lair, "mcp", host, port)
    assert tried == {"status": 401, "session": False}, tried
    assert f"(uid {attacker})" in d.log()
    # The owner, from the same address and without a token, is not refused the same way.
    [own] = intrude_as_owner(lair, "mcp", host, port)
    assert own["status"] != 401, own


def intrude_as_owner(lair: Path, *args: str) -> list[dict]:
    """The intruder's request, made by the daemon's own user (the control case)."""
    res = subprocess.run(
        [SYSTEM_PYTHON, str(lair / "intruder.py"), *args], capture_output=True, timeout=120, cwd="/"
    )
    assert res.returncode == 0, res.stderr.decode()
    return [json.loads(line) for line in res.stdout.splitlines()]


# -- failed logins count per user ----------------------------------------------------


async def test_another_users_wrong_tokens_never_lock_out_the_owner(daemon_factory, lair: Path, attacker: int):
    d: DaemonProcess = daemon_factory()
    host, port = host_port(d.ws_url)
    guesses = intrude(lair, "guess", host, port, "10")
    assert [g["status"] for g in guesses] == [401] * 5 + [429] * 5, guesses
    # During the attacker's block: the victim with the token gets in at once, by library and by ccxctl.
    listed = await rpc(d.ws_url, "job.list", token=d.token)
    assert listed["result"]["jobs"] == []
    res = ccxctl("--url", d.ws_url, "ps", env=victim_env(CCXD_TOKEN=d.token))
    assert res.returncode == 0, res.stderr
    assert [g["status"] for g in intrude(lair, "guess", host, port, "2")] == [429, 429]
    assert f"refused 127.0.0.1 (uid {attacker}): wrong token" in d.log()
    assert "refusing this user for 120s" in d.log()


# -- /metrics ------------------------------------------------------------------------

SECRET_JOBS = [
    "mysql --password=hunter2 -e 'select 1'",
    "curl -s https://u:hunter2@host.invalid/",
    ["mysql", "--password", "hunter2"],
    "DB_PASSWORD=hunter2 true --token hunter2",
]


async def test_metrics_on_tcp_need_the_token_and_never_show_a_password(
    daemon_factory, lair: Path, attacker: int
):
    d: DaemonProcess = daemon_factory({"CCXD_BUILTIN_HOOKS": "metrics", "CCXD_METRICS_LISTEN": "127.0.0.1:0"})
    c = await d.client()
    for command in SECRET_JOBS:
        await run_job(c, command)
    await c.close()
    url = _status_listener(d.socket, "metrics")
    host, port = host_port(url)
    [anonymous] = intrude(lair, "http", host, port)
    [guessed] = intrude(lair, "http", host, port, "not-the-token-0123456789")
    for refused in (anonymous, guessed):
        assert refused["status"] == 401 and "ccxd_command" not in refused["body"], refused
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {d.token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read().decode()
    assert "ccxd_command_runs_total" in text and "mysql --password=***" in text, text
    assert "hunter" not in text, text  # not hunter2, nor its signature hunter<n>
    assert "https://u:***@host.invalid" in text
    # ccxctl status shows the same signatures, and neither has the password.
    assert b"hunter" not in ccxctl("--socket", str(d.socket), "status", env=victim_env()).stdout


async def test_metrics_on_a_unix_socket_are_the_owners_only(daemon_factory, lair: Path, attacker: int):
    d: DaemonProcess = daemon_factory({"CCXD_BUILTIN_HOOKS": "metrics", "CCXD_METRICS_LISTEN": "unix:"})
    c = await d.client()
    await run_job(c, "mysql --password=hunter2")
    await c.close()
    where = _status_listener(d.socket, "metrics")
    assert where.startswith("unix:")
    path = Path(where[len("unix:") :])
    assert path.parent == d.socket.parent
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
    [tried] = intrude(lair, "unix", str(path))
    assert tried == {"status": 0, "error": "PermissionError"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while data := sock.recv(65536):
            got += data
    assert got.startswith(b"HTTP/1.1 200 ") and b"ccxd_command_runs_total" in got
    assert b"hunter" not in got
