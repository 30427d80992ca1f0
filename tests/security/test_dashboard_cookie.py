"""A dashboard session cookie works only for the local user who logged in.

Cookies do not tell ports apart, so a server another local user runs on
127.0.0.1 receives the victim's session cookie; that user can also forge
``Origin``.  The session is bound to the uid that logged in: the attacker's
replay is refused, while the victim's own is admitted.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from tests.conftest import DaemonProcess
from tests.security.conftest import outward_address
from tests.security.test_loopback import host_port, intrude
from tests.ui.conftest import rpc


def _get(d: DaemonProcess, path: str) -> tuple[int, str]:
    """GET ``path`` of the dashboard as the victim: the status and the Set-Cookie header."""
    url = urlsplit(d.ws_url)
    conn = http.client.HTTPConnection(str(url.hostname), url.port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.getheader("Set-Cookie") or ""
    finally:
        conn.close()


def _log_in(d: DaemonProcess) -> str:
    """The session cookie a browser of the victim gets from a one-time login URL."""
    status, cookie = _get(d, rpc(d, "ui.login_url")["path"])
    assert status == 303, status
    assert cookie.startswith("ccxd_session=") and "HttpOnly" in cookie
    return cookie.split(";", 1)[0].split("=", 1)[1]


async def test_another_user_with_the_victims_cookie_and_origin_is_refused(
    daemon_factory, lair: Path, tmp_root: Path, attacker: int
):
    d: DaemonProcess = daemon_factory()
    host, port = host_port(d.ws_url)
    cookie = _log_in(d)
    marker = tmp_root / "attacker-was-here"
    [tried] = intrude(lair, "cookie", host, port, str(marker), cookie)
    assert tried["status"] == 401, tried
    assert "dashboard session has ended" in tried["got"] and '"result"' not in tried["got"]
    assert rpc(d, "job.list")["jobs"] == [] and not marker.exists()
    # The victim's own connection with the same cookie and Origin is admitted.
    headers = {"Cookie": f"ccxd_session={cookie}"}
    async with connect(d.ws_url, origin=f"http://{host}:{port}", additional_headers=headers) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "daemon.ping"}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == 7:
                break
    assert reply["result"]["pong"] is True


@pytest.mark.parametrize("source", ["loopback", "outward"])
async def test_another_user_who_reads_the_login_url_first_cannot_log_in(
    daemon_factory, lair: Path, tmp_root: Path, attacker: int, source: str
):
    # The login URL is on the browser's command line, which every local user can read;
    # from the machine's outward address the attacker's connection to 127.0.0.1 looks remote.
    d: DaemonProcess = daemon_factory()
    host, port = host_port(d.ws_url)
    path = rpc(d, "ui.login_url")["path"]
    marker = tmp_root / "attacker-was-here"
    login, tried = intrude(
        lair, "login", host, port, str(marker), path, *([outward_address()] if source == "outward" else [])
    )
    assert login == {"status": 403, "cookie": False}, login
    assert tried["status"] == 401 and '"result"' not in tried["got"], tried
    assert rpc(d, "job.list")["jobs"] == [] and not marker.exists()
    assert f"uid {attacker}" in d.log(), "the refusal is logged"
    # The link is not spent: the victim's browser still logs in with it.
    assert _get(d, path)[0] == 303
