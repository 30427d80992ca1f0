"""MCP's streamable HTTP transport at ``/mcp`` on the daemon's WebSocket port, with the SDK's own client."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ErrorData, ListRootsResult, Root, TextResourceContents
from pydantic import FileUrl
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from ccxd.client import connect
from tests.conftest import DaemonProcess
from tests.mcp.helpers import call
from tests.mcp.test_mcp_stdio import TOOLS

INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def http_session(
    daemon: DaemonProcess, cafile: Path | None = None, roots: list[Path] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over HTTP(S) with the daemon's token (and ``roots`` to list, if any)."""

    async def list_roots(context: Any) -> ListRootsResult | ErrorData:
        return ListRootsResult(roots=[Root(uri=FileUrl(p.as_uri())) for p in roots or ()])

    headers = {"Authorization": f"Bearer {daemon.token}"}
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cafile)) if cafile else True
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0), verify=verify) as http:
        async with streamable_http_client(f"{daemon.http_url}/mcp", http_client=http) as (read, write):
            async with ClientSession(
                read, write, list_roots_callback=list_roots if roots else None
            ) as session:
                await session.initialize()
                yield session


def raw_exchange(daemon: DaemonProcess, request: bytes) -> bytes:
    """Send ``request`` on a new connection to the port; everything the daemon sends until it closes."""
    with socket.create_connection(("127.0.0.1", daemon.ws_port), timeout=10) as sock:
        with contextlib.suppress(ConnectionResetError):  # closed before it read all we sent
            sock.sendall(request)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    """What the daemon sends on ``sock`` until it closes it (or aborts it: a reset)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def post(body: dict[str, object], headers: dict[str, str], close: bool = False) -> bytes:
    """A POST /mcp as bytes (a keep-alive one unless ``close``)."""
    data = json.dumps(body).encode()
    fields = {**HEADERS, **headers, "Host": "127.0.0.1", "Content-Length": str(len(data))}
    if close:
        fields["Connection"] = "close"
    head = "POST /mcp HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode() + data


async def test_same_tools_as_stdio_and_a_job_run_by_the_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    client = await connect(daemon.socket)
    try:
        listeners = {x.kind: x.address for x in (await client.status()).listeners}
    finally:
        await client.close()
    assert listeners["mcp"] == f"{daemon.http_url}/mcp"  # ccxctl status says where to point an agent
    async with http_session(daemon) as session:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        templates = (await session.list_resource_templates()).resource_templates
        started = await call(
            session, "ccxd_submit", command="echo hi; sleep 1; echo bye; pwd", cwd=str(tmp_path)
        )
        done = await call(session, "ccxd_wait", job_id=started["job_id"], timeout=20)
        page = await call(session, "ccxd_logs", job_id=started["job_id"], max_bytes=3)
        output = await session.read_resource(f"ccxd://job/{started['job_id']}/output")
    assert set(listed) == TOOLS
    assert "roots" not in listed["ccxd_submit"].input_schema["properties"]  # the server's, not the model's
    assert {t.uri_template for t in templates} == {"ccxd://job/{job_id}/output", "ccxd://job/{job_id}/record"}
    assert started["finished"] is False
    assert (
        done["finished"] is True
        and done["outcome"] == "exit 0"
        and done["output"] == f"hi\nbye\n{tmp_path}\n"
    )
    assert page["text"] == "hi\n" and page["next_offset"] == 3
    assert isinstance(output.contents[0], TextResourceContents)
    assert output.contents[0].text == f"hi\nbye\n{tmp_path}\n"
    client = await connect(daemon.socket)
    try:
        assert (await client.get(started["job_id"])).exit_code == 0  # a job of the daemon's, kept after
    finally:
        await client.close()


async def test_sessions_are_separate_and_deleted_ones_are_gone(daemon: DaemonProcess) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {daemon.token}"}) as http:
        url = f"{daemon.http_url}/mcp"
        first = await http.post(url, json=INIT, headers=HEADERS)
        second = await http.post(url, json=INIT, headers=HEADERS)
        ids = [r.headers["mcp-session-id"] for r in (first, second)]
        assert first.status_code == 200 and ids[0] != ids[1]
        assert '"serverInfo"' in first.text and '"ccxd"' in first.text
        gone = await http.delete(url, headers={"Mcp-Session-Id": ids[0]})
        assert gone.status_code == 200
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        after = await http.post(url, json=ping, headers={**HEADERS, "Mcp-Session-Id": ids[0]})
        alive = await http.post(
            url,
            json=ping,
            headers={**HEADERS, "Mcp-Session-Id": ids[1], "Mcp-Protocol-Version": "2025-06-18"},
        )
    assert after.status_code == 404
    assert alive.status_code == 200 and '"result"' in alive.text


def test_refused_requests_get_their_status_and_nothing_else(daemon: DaemonProcess) -> None:
    bare = raw_exchange(daemon, post(INIT, {}))
    wrong = raw_exchange(daemon, post(INIT, {"Authorization": "Bearer nope"}))
    foreign = raw_exchange(
        daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}", "Origin": "http://evil"})
    )
    for answer, status in ((bare, b"401"), (wrong, b"401"), (foreign, b"403")):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, answer
        assert b"mcp-session-id" not in head.lower() and b"jsonrpc" not in body  # the MCP app never saw it
        assert b"connection: close" in head.lower()
    assert (
        b"bearer token is required" in bare and b"wrong token" in wrong and b"origin not allowed" in foreign
    )


def test_a_body_over_max_message_bytes_is_refused(daemon_factory: object) -> None:
    daemon = daemon_factory({"CCXD_MAX_MESSAGE_BYTES": "4096"})  # type: ignore[operator]
    big = {**INIT, "params": {**INIT["params"], "pad": "x" * 8000}}
    answer = raw_exchange(daemon, post(big, {"Authorization": f"Bearer {daemon.token}"}))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"max_message_bytes" in answer


async def test_the_websocket_and_health_still_answer_on_the_port(daemon: DaemonProcess) -> None:
    async with httpx2.AsyncClient() as http:
        health = await http.get(f"{daemon.http_url}/health")
        other = await http.get(f"{daemon.http_url}/nothing")
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert other.status_code == 404
    client = await connect(daemon.ws_url, token=daemon.token)
    try:
        info = await client.start("echo over ws")
        assert (await client.wait(info.id)).exit_code == 0
    finally:
        await client.close()


NO_MCP_FINDER = """\
import sys


class NoMcp:
    def find_spec(self, name, path=None, target=None):
        if name == "mcp" or name.startswith("mcp."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoMcp())
"""


async def test_without_the_mcp_extra_the_answer_says_how_to_install_it(
    daemon_factory: object, tmp_path: Path
) -> None:
    # A finder first on the daemon's import path that knows no mcp: as if it were not installed.
    hidden = tmp_path / "no-mcp"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(NO_MCP_FINDER)
    daemon = daemon_factory({"PYTHONPATH": str(hidden)})  # type: ignore[operator]
    client = await connect(daemon.socket)
    try:
        assert "mcp" not in {x.kind for x in (await client.status()).listeners}  # nothing to advertise
    finally:
        await client.close()
    bare = raw_exchange(daemon, post(INIT, {}))
    answer = raw_exchange(daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}"}, close=True))
    assert bare.startswith(b"HTTP/1.1 401 ")  # the token first, whatever is installed
    assert answer.startswith(b"HTTP/1.1 501 ") and b"pip install 'ccxd[mcp]'" in answer


def test_unfinished_requests_count_as_handshakes_and_are_cut_off(daemon_factory: object) -> None:
    daemon = daemon_factory(  # type: ignore[operator]
        {"CCXD_WS_HANDSHAKE_TIMEOUT": "1", "CCXD_WS_HANDSHAKES_PER_PEER": "2"}
    )
    partial = post(INIT, {"Authorization": f"Bearer {daemon.token}"})[:60]  # the head's end never comes
    slow = [socket.create_connection(("127.0.0.1", daemon.ws_port), timeout=10) for _ in range(2)]
    try:
        for sock in slow:
            sock.sendall(partial)
        # A third from the same address is closed as it is accepted, unanswered ...
        assert raw_exchange(daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}"})) == b""
        # ... and the unfinished ones are closed after ws_handshake_timeout, unanswered too.
        started = time.monotonic()
        assert [read_to_close(sock) for sock in slow] == [b"", b""]
        assert time.monotonic() - started < 5
    finally:
        for sock in slow:
            sock.close()
    answer = raw_exchange(daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}"}, close=True))
    assert answer.startswith(b"HTTP/1.1 200 ")  # their places are free again
    # A first request whose body never ends is cut off within the same time, logged in or not.
    started = time.monotonic()
    assert raw_exchange(daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}"})[:-10]) == b""
    assert time.monotonic() - started < 5


async def test_over_tls_with_a_job_and_a_large_answer(daemon_factory: object, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    daemon = daemon_factory({"CCXD_WS_TLS_CERT": str(cert), "CCXD_WS_TLS_KEY": str(key)})  # type: ignore[operator]
    assert daemon.http_url.startswith("https://")
    async with http_session(daemon, cafile=cert) as session:
        done = await call(session, "ccxd_submit", command="head -c 3000000 /dev/zero | tr '\\0' x", wait=30)
        assert done["outcome"] == "exit 0"
        page = await call(session, "ccxd_logs", job_id=done["job_id"], max_bytes=65536)
    assert page["text"] == "x" * 65536 and page["next_offset"] == 65536  # 64 KiB through the TLS stream


def test_with_ws_auth_off_the_daemons_own_user_needs_no_token(daemon_factory: object) -> None:
    daemon = daemon_factory({"CCXD_WS_AUTH": "false"})  # type: ignore[operator]
    answer = raw_exchange(daemon, post(INIT, {}, close=True))  # this test runs as the daemon's user
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"mcp-session-id" in head.lower() and b'"ccxd"' in body


async def test_a_job_without_a_directory_runs_in_the_clients_root(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    async with http_session(daemon, roots=[project]) as session:
        here = await call(session, "ccxd_submit", command="pwd", wait=20)
        below = await call(session, "ccxd_submit", command="pwd", cwd="sub", wait=20)
        named = await call(session, "ccxd_submit", command="pwd", cwd=str(tmp_path), wait=20)
    assert [here["output"], below["output"], named["output"]] == [
        f"{project}\n",
        f"{project}/sub\n",
        f"{tmp_path}\n",
    ]
    async with http_session(daemon, roots=[tmp_path / "not-here"]) as session:
        elsewhere = await call(session, "ccxd_submit", command="pwd", wait=20)
    assert elsewhere["cwd"] == str(Path.home())  # a root that is no directory here: the daemon's default


def test_a_refused_request_is_answered_before_its_body_and_a_large_one_is_read_whole(
    daemon: DaemonProcess,
) -> None:
    head = post(INIT, {"Content-Length": "900000"}).partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", daemon.ws_port), timeout=10) as sock:
        sock.sendall(head)  # no body: the daemon need not wait for it to refuse
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 401 ")
    big = {**INIT, "params": {**INIT["params"], "clientInfo": {"name": "x" * 300_000, "version": "1"}}}
    answer = raw_exchange(daemon, post(big, {"Authorization": f"Bearer {daemon.token}"}, close=True))
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"serverInfo"' in answer  # 300 kB, beyond any buffer


async def test_wrong_tokens_at_mcp_count_with_the_websockets(daemon_factory: object) -> None:
    daemon = daemon_factory({"CCXD_WS_AUTH_MAX_FAILURES": "2"})  # type: ignore[operator]
    for _ in range(2):
        assert raw_exchange(daemon, post(INIT, {"Authorization": "Bearer guess"})).startswith(
            b"HTTP/1.1 401 "
        )
    # Blocked, whatever it sends now: at /mcp with the right token ...
    blocked = raw_exchange(daemon, post(INIT, {"Authorization": f"Bearer {daemon.token}"}))
    assert blocked.startswith(b"HTTP/1.1 429 ") and b"retry-after" in blocked.lower()
    # ... and on the WebSocket, since one user's guesses are counted once.
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(daemon.ws_url, additional_headers={"Authorization": f"Bearer {daemon.token}"}):
            pass
    assert refused.value.response.status_code == 429


def test_with_ws_auth_off_a_page_whose_name_was_rebound_to_the_port_is_refused(
    daemon_factory: object,
) -> None:
    # DNS rebinding: the browser (the user's uid) believes it talks to evil.example, and may omit Origin.
    daemon = daemon_factory({"CCXD_WS_AUTH": "false"})  # type: ignore[operator]
    rebound = f"Host: evil.example:{daemon.ws_port}".encode()
    for request in (post(INIT, {}, close=True), b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
        answer = raw_exchange(daemon, request.replace(b"Host: 127.0.0.1", rebound))
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert answer.startswith(b"HTTP/1.1 421 ") and b"mcp-session-id" not in head, answer
    # A client with the token may use any name for the host (a remote one, through its DNS).
    with_token = post(INIT, {"Authorization": f"Bearer {daemon.token}"}, close=True)
    assert raw_exchange(daemon, with_token.replace(b"Host: 127.0.0.1", rebound)).startswith(b"HTTP/1.1 200 ")


def test_heads_that_another_parser_could_read_otherwise_are_refused(daemon: DaemonProcess) -> None:
    # A proxy in front that reads them differently would see other requests than the daemon (smuggling).
    auth = {"Authorization": f"Bearer {daemon.token}"}
    size = str(len(json.dumps(INIT)))
    cases = {
        "signed length": post(INIT, auth, close=True).replace(
            f"Content-Length: {size}".encode(), f"Content-Length: +{size}".encode()
        ),
        "bare LF": post(INIT, {**auth, "X-Note": "a\nContent-Length: 0"}, close=True),
        "NUL": post(INIT, {**auth, "X-Note": "a\0b"}, close=True),
        "space in a name": post(INIT, {**auth, "Content-Length ": "0"}, close=True),
        "head over 64 KiB": post(INIT, {**auth, **{f"X-Pad-{i}": "y" * 1000 for i in range(70)}}, close=True),
    }
    for why, request in cases.items():
        answer = raw_exchange(daemon, request)
        assert answer.split(b" ", 2)[1] in (b"400", b"431"), (why, answer[:200])
        assert b"mcp-session-id" not in answer.lower(), why  # the MCP app never saw it
    assert raw_exchange(daemon, post(INIT, auth, close=True)).startswith(b"HTTP/1.1 200 ")  # still serving


def test_sessions_are_bounded_and_one_over_the_bound_is_told_so(daemon_factory: object) -> None:
    # Clients that never DELETE their session must not pile them up in the daemon's memory.
    daemon = daemon_factory({"CCXD_MAX_CONNECTIONS": "3"})  # type: ignore[operator]
    auth = {"Authorization": f"Bearer {daemon.token}"}
    opened = [raw_exchange(daemon, post(INIT, auth, close=True)) for _ in range(3)]
    assert all(a.startswith(b"HTTP/1.1 200 ") and b"mcp-session-id" in a.lower() for a in opened)
    over = raw_exchange(daemon, post(INIT, auth, close=True))
    assert over.startswith(b"HTTP/1.1 503 ") and b"Too many open sessions" in over, over
