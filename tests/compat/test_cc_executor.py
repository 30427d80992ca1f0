"""cc_executor clients against a real daemon: raw JSON-RPC over WebSocket, as they spoke it."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import urllib.request
import uuid

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers import RawConnection, job_pids

LEGACY_ENV = {"CCXD_WS_AUTH": "false", "CCXD_WS_LEGACY_PING_INTERVAL": "0.2"}


@pytest.fixture
def legacy(daemon_factory):
    """A loopback daemon with authentication off, as cc_executor clients expect."""
    return daemon_factory(LEGACY_ENV)


class Legacy:
    """A cc_executor-style client: raw JSON, notifications read in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pings = 0

    @classmethod
    async def open(cls, daemon, path: str = "/ws", headers: dict | None = None) -> Legacy:
        base = daemon.ws_url.rsplit("/", 1)[0]
        ws = await connect(base + path, additional_headers=headers, open_timeout=10)
        return cls(ws)

    async def next(self) -> dict:
        """The next message that is not a keepalive ``ping``."""
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("method") == "ping":
                assert isinstance(msg["params"]["timestamp"], float)
                self.pings += 1
                continue
            return msg

    async def send(self, method: str, params: dict | None = None, req_id: object = None) -> object:
        req_id = next(self.ids) if req_id is None else req_id
        body = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            body["params"] = params
        await self.ws.send(json.dumps(body))
        return req_id

    async def call(self, method: str, params: dict | None = None, req_id: object = None) -> dict:
        """Send a request; its reply must be the next message (notifications come after).

        Output of a job that is already running may arrive first: it is skipped.
        """
        req_id = await self.send(method, params, req_id)
        reply = await self.next()
        while reply.get("method") == "process.output":
            reply = await self.next()
        assert reply.get("id") == req_id and "method" not in reply, reply
        return reply

    async def until(self, method: str) -> dict:
        """Skip process.output notifications up to ``method``; return its params."""
        while True:
            msg = await self.next()
            assert "id" not in msg, f"unexpected reply {msg}"
            if msg["method"] == method:
                return msg["params"]
            assert msg["method"] == "process.output", msg

    async def run(self, params: dict) -> tuple[dict, list[dict], dict, str]:
        """``execute``: (result, outputs, final params, final method)."""
        reply = await self.call("execute", params)
        assert "result" in reply, reply
        started = await self.next()
        assert started["method"] == "process.started", started
        assert started["params"]["pid"] == reply["result"]["pid"]
        outputs = []
        while True:
            msg = await self.next()
            if msg["method"] == "process.output":
                outputs.append(msg["params"])
                continue
            assert msg["method"] in ("process.completed", "process.failed"), msg
            return reply["result"], outputs, msg["params"], msg["method"]


async def test_a_cc_executor_session(legacy):
    c = await Legacy.open(legacy)
    hello = await c.next()
    assert hello["method"] == "connected" and "id" not in hello
    assert uuid.UUID(hello["params"]["session_id"])
    assert hello["params"]["version"].startswith("0.")
    assert {"execute", "control", "stream"} <= set(hello["params"]["capabilities"])

    result, outputs, done, kind = await c.run({"command": "echo hi"})
    assert result["status"] == "started" and result["pid"] > 0 and result["pgid"] > 0
    assert outputs == [{"type": "stdout", "data": "hi\n", "job_id": result["job_id"], "truncated": False}]
    assert kind == "process.completed"
    assert done["status"] == "completed" and done["exit_code"] == 0
    assert done["pid"] == result["pid"] and done["execution_time"] >= 0

    # Once a job finished, the next execute on the same connection works (unknown params ignored).
    result2, outputs, done, _ = await c.run({"command": "echo again; echo oops >&2", "timeout": 30, "x": 1})
    assert result2["pid"] != result["pid"] and done["status"] == "completed"
    assert {(o["type"], o["data"]) for o in outputs} == {("stdout", "again\n"), ("stderr", "oops\n")}

    _, _, done, _ = await c.run({"command": "exit 3"})
    assert done["status"] == "failed" and done["exit_code"] == 3

    # A timeout is a failure with 124 (cc_executor reported 0).
    _, _, done, _ = await c.run({"command": "sleep 30", "timeout": 0.3})
    assert done["status"] == "failed" and done["exit_code"] == 124 and done["reason"] == "timeout"

    # The jobs are ccxd's own: ccxctl ps (job.list) shows them, tagged and with their peer.
    jobs = RawConnection(legacy.socket).call("job.list")["result"]["jobs"]
    mine = [j for j in jobs if j["id"] == result["job_id"]]
    assert mine and mine[0]["tags"] == ["cc_executor"] and mine[0]["peer"].startswith("ws 127.0.0.1:")
    assert len([j for j in jobs if "cc_executor" in j.get("tags", [])]) == 4
    await c.ws.close()


async def test_control_pause_resume_cancel(legacy):
    c = await Legacy.open(legacy)
    await c.next()  # connected
    unix = RawConnection(legacy.socket)
    # No process yet: cc_executor's -32002 and its words (-32003 meant "session limit" there).
    with_string_id = await c.call("control", {"type": "PAUSE"}, req_id="ctl-0")
    assert with_string_id["error"]["code"] == -32002 and with_string_id["id"] == "ctl-0"
    assert with_string_id["error"]["message"] == "No process is running"

    reply = await c.call("execute", {"command": "while true; do echo tick; sleep 0.05; done"})
    job_id, pid = reply["result"]["job_id"], reply["result"]["pid"]
    assert (await c.next())["method"] == "process.started"
    first = await c.next()
    assert first["method"] == "process.output" and first["params"]["data"].startswith("tick")

    busy = await c.call("execute", {"command": "echo no"}, req_id="busy-1")
    assert busy["error"]["code"] == -32602 and busy["id"] == "busy-1"
    assert busy["error"]["message"].startswith("A process is already running")

    for kind, status, state in (("PAUSE", "paused", "paused"), ("RESUME", "resumed", "running")):
        reply = await c.call("control", {"type": kind})
        assert reply["result"] == {"status": status}
        note = await c.until(f"process.{status}")
        assert note == {"status": status, "pid": pid, "pgid": pid, "job_id": job_id}
        assert unix.call("job.get", {"job_id": job_id})["result"]["state"] == state

    # The job is printing: a tick already on its way may cross the CANCEL request.
    cancel_id = await c.send("control", {"type": "CANCEL"})
    while (reply := await c.next()).get("method") == "process.output":
        pass
    assert reply.get("id") == cancel_id and reply["result"] == {"status": "canceled"}
    assert (await c.until("process.canceled"))["status"] == "canceled"

    # Right after a cancel the connection takes a new execute, and the cancelled job sends nothing more.
    result, _, done, kind = await c.run({"command": "echo after"})
    assert kind == "process.completed" and done["job_id"] == result["job_id"] != job_id
    assert done["exit_code"] == 0
    # process.canceled answers the request (as cc_executor did); the job's end follows
    # once its tree is gone, which on a busy machine can come after "echo after".
    unix.call("job.subscribe", {"job_id": job_id, "output": False})
    while (note := unix.recv()).get("method") != "job.finished":
        pass
    final = note["params"]["job"]
    assert final["state"] == "finished" and final["reason"] == "cancelled"
    bad = await c.call("control", {"type": "STOP"})
    assert bad["error"]["code"] == -32602
    # The job finished: again no process to act on.
    for kind in ("PAUSE", "RESUME", "CANCEL"):
        assert (await c.call("control", {"type": kind}))["error"]["code"] == -32002
    await c.ws.close()


async def test_mcp_path_pings_pong_hooks_and_errors_done_right(legacy):
    c = await Legacy.open(legacy, "/ws/mcp")
    assert (await c.next())["method"] == "connected"
    # The server's periodic ping notification, answered with pong (request or notification).
    while c.pings == 0:
        msg = json.loads(await asyncio.wait_for(c.ws.recv(), 10))
        if msg.get("method") == "ping":
            c.pings += 1
    assert (await c.call("pong", {"timestamp": 1.0}))["result"] == {"ok": True}
    await c.ws.send(json.dumps({"jsonrpc": "2.0", "method": "pong"}))  # no reply due
    hooks = await c.call("hook_status")
    assert hooks["result"]["enabled"] is False and hooks["result"]["hooks"] == []

    # cc_executor answered bad JSON with -32603 and dropped ids: ccxd says -32700 and keeps them.
    await c.ws.send("{this is not json")
    err = await c.next()
    assert err["error"]["code"] == -32700 and err["id"] is None
    missing = await c.call("execute", {}, req_id="e-7")
    assert missing["error"]["code"] == -32602 and missing["id"] == "e-7"
    unknown = await c.call("no_such_method", req_id=42)
    assert unknown["error"]["code"] == -32601 and unknown["id"] == 42

    # Native methods work on the same connection.
    assert (await c.call("daemon.ping"))["result"]["pong"] is True
    _, outputs, done, _ = await c.run({"command": "printf 'a\\377b'"})
    assert outputs[0]["data"] == "a\ufffdb" and done["exit_code"] == 0
    await c.ws.close()


async def test_health_counts_sessions(legacy):
    a = await Legacy.open(legacy)
    b = await Legacy.open(legacy, "/ws/mcp")
    await a.next()
    await b.next()
    url = legacy.ws_url.replace("ws://", "http://").rsplit("/", 1)[0] + "/health"
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["status"] == "healthy" and body["service"] == "ccxd" and body["active_sessions"] == 2
    assert body["uptime_seconds"] >= 0 and body["version"].startswith("0.")
    await a.ws.close()
    await b.ws.close()


async def sessions(daemon) -> int:
    url = daemon.ws_url.replace("ws://", "http://").rsplit("/", 1)[0] + "/health"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    return json.loads(body)["active_sessions"]


def wait_finished(daemon, job_id: str) -> dict:
    """The job's final record, once job.finished says it ended."""
    unix = RawConnection(daemon.socket)
    try:
        reply = unix.call("job.subscribe", {"job_id": job_id, "output": False})
        assert "result" in reply, reply
        while (note := unix.recv()).get("method") != "job.finished":
            pass
        return note["params"]["job"]
    finally:
        unix.close()


async def test_closing_the_connection_kills_the_job_tree(legacy):
    # cc_executor killed the process when its client went away: a client's own timeout
    # (it closes the socket) stops the work.
    c = await Legacy.open(legacy)
    await c.next()
    reply = await c.call("execute", {"command": "sleep 60 & sleep 61; wait"})
    job_id, pid = reply["result"]["job_id"], reply["result"]["pid"]
    assert (await c.next())["method"] == "process.started"
    while len(job_pids(job_id)) < 3:  # the shell and both sleeps
        await asyncio.sleep(0.05)
    tree = job_pids(job_id)
    assert pid in tree
    await c.ws.close()
    final = await asyncio.to_thread(wait_finished, legacy, job_id)
    assert final["reason"] == "cancelled"
    assert job_pids(job_id) == []
    for p in tree:
        with pytest.raises(ProcessLookupError):
            os.kill(p, 0)


async def test_with_the_switch_off_jobs_outlive_the_connection(daemon_factory):
    d = daemon_factory({**LEGACY_ENV, "CCXD_LEGACY_CANCEL_ON_DISCONNECT": "false"})
    c = await Legacy.open(d)
    await c.next()
    reply = await c.call("execute", {"command": "sleep 30"})
    job_id, pid = reply["result"]["job_id"], reply["result"]["pid"]
    await c.ws.close()
    assert c.ws.close_code == 1000
    while await sessions(d):  # the daemon has let the connection go (and run its close hook)
        await asyncio.sleep(0.05)
    unix = RawConnection(d.socket)
    assert unix.call("job.get", {"job_id": job_id})["result"]["state"] == "running"
    os.kill(pid, 0)
    unix.call("job.cancel", {"job_id": job_id})


async def test_a_daemon_stop_closes_with_1001_and_leaves_jobs_to_on_stop(daemon_factory):
    d = daemon_factory({**LEGACY_ENV, "CCXD_ON_STOP": "leave"})
    c = await Legacy.open(d)
    await c.next()
    reply = await c.call("execute", {"command": "sleep 30"})
    pid = reply["result"]["pid"]
    stopping = asyncio.create_task(asyncio.to_thread(d.stop))  # keep our loop free to answer the close
    try:
        while True:
            await asyncio.wait_for(c.ws.recv(), 30)
    except ConnectionClosed as exc:
        closed = exc
    assert await stopping == 0
    assert closed.rcvd is not None and closed.rcvd.code == 1001  # not cc_executor's 1006
    # The stop closed the connection, but the daemon's stop mode (leave) decides: it runs on.
    try:
        os.kill(pid, 0)
    finally:
        os.killpg(pid, signal.SIGKILL)


async def test_one_process_output_per_line_as_cc_executor_sent(legacy):
    c = await Legacy.open(legacy)
    await c.next()
    result, outputs, done, _ = await c.run({"command": "seq 1 20000"})
    assert done["exit_code"] == 0
    assert len(outputs) == 20000
    assert [o["data"] for o in outputs] == [f"{i}\n" for i in range(1, 20001)]
    assert {o["job_id"] for o in outputs} == {result["job_id"]}
    assert not any(o["truncated"] for o in outputs)

    # A client that looks for a variable at the start of a message finds it.
    _, outputs, _, _ = await c.run({"command": "env"})
    assert any(o["data"].startswith("PATH=") for o in outputs)
    assert all(o["data"].endswith("\n") and o["data"].count("\n") == 1 for o in outputs)

    # stdout and stderr lines interleaved within one line's time stay whole, each on its stream.
    _, outputs, _, _ = await c.run(
        {"command": "for i in {1..200}; do printf 'o%d ' $i; printf 'e%d\\n' $i >&2; echo; done"}
    )
    assert [o["data"] for o in outputs if o["type"] == "stdout"] == [f"o{i} \n" for i in range(1, 201)]
    assert [o["data"] for o in outputs if o["type"] == "stderr"] == [f"e{i}\n" for i in range(1, 201)]

    # A last line without a newline comes when the job ends.
    _, outputs, _, _ = await c.run({"command": "echo one; printf two"})
    assert [o["data"] for o in outputs] == ["one\n", "two"]
    await c.ws.close()


async def test_a_long_line_comes_in_64_kib_pieces_never_inside_a_character(legacy):
    c = await Legacy.open(legacy)
    await c.next()
    _, outputs, _, _ = await c.run({"command": "head -c 204800 /dev/zero | tr '\\0' x; echo; echo next"})
    pieces = [o["data"] for o in outputs]
    assert [len(p) for p in pieces] == [65536, 65536, 65536, 8193, 5]
    assert "".join(pieces[:4]) == "x" * 204800 + "\n" and pieces[4] == "next\n"

    # "ab" then 3-byte characters: 64 KiB falls inside one, so each piece ends before it.
    _, outputs, _, _ = await c.run({"command": "printf ab; printf '€%.0s' {1..30000}; echo"})
    pieces = [o["data"] for o in outputs]
    assert len(pieces) == 2 and "".join(pieces) == "ab" + "€" * 30000 + "\n"
    assert "\ufffd" not in "".join(pieces)
    assert [len(p.encode()) for p in pieces] == [65534, 2 + 3 * 30000 + 1 - 65534]
    await c.ws.close()


async def test_an_execute_without_timeout_has_none_whatever_history_estimates(daemon_factory):
    # History would give this command shape a 1 s timeout (5 runs of 0.1 s, and a silent job).
    d = daemon_factory(
        {
            **LEGACY_ENV,
            "CCXD_ESTIMATE_MIN": "1",
            "CCXD_ESTIMATE_FLOOR": "0",
            "CCXD_ESTIMATE_SILENCE": "0.5",
        }
    )
    c = await Legacy.open(d)
    await c.next()
    for _ in range(5):
        _, _, done, _ = await c.run({"command": "sleep 0.1"})
        assert done["exit_code"] == 0
    result, _, done, kind = await c.run({"command": "sleep 3"})
    assert kind == "process.completed" and done["status"] == "completed", done
    assert done["exit_code"] == 0 and done["reason"] == "exited" and done["execution_time"] >= 3
    job = RawConnection(d.socket).call("job.get", {"job_id": result["job_id"]})["result"]
    assert job.get("timeout") is None and job["timeout_basis"] == "none (timeout 0)", job
    # An explicit timeout still holds.
    _, _, done, _ = await c.run({"command": "sleep 3", "timeout": 0.5})
    assert done["exit_code"] == 124 and done["reason"] == "timeout"
    await c.ws.close()


async def test_with_auth_on_cc_executor_clients_need_the_token(daemon):
    base = daemon.ws_url.rsplit("/", 1)[0]
    with pytest.raises(InvalidStatus) as info:
        await connect(base + "/ws/mcp", open_timeout=10)
    assert info.value.response.status_code == 401
    c = await Legacy.open(daemon, "/ws/mcp", headers={"Authorization": f"Bearer {daemon.token}"})
    assert (await c.next())["method"] == "connected"
    _, outputs, done, _ = await c.run({"command": "echo ok"})
    assert outputs[0]["data"] == "ok\n" and done["status"] == "completed"
    await c.ws.close()


async def test_execute_errors_carry_cc_executor_codes(daemon_factory, tmp_root):
    # A command a hook refuses is cc_executor's "command not allowed"; a full queue, which is
    # ccxd's -32002 but cc_executor's "process not found", is its plain failure -32603.
    hooks = tmp_root / "hooks"
    hooks.mkdir()
    (hooks / "guard.py").write_text(
        "async def no_rm(ctx):\n"
        "    if 'rm -rf' in str(ctx.params['command']):\n"
        "        return {'block': True, 'reason': 'no rm -rf'}\n"
        "HOOKS = {'pre': [no_rm]}\n"
    )
    d = daemon_factory(
        {
            **LEGACY_ENV,
            "CCXD_HOOKS_DIR": str(hooks),
            "CCXD_MAX_CONCURRENT_JOBS": "1",
            "CCXD_MAX_QUEUED_JOBS": "0",
        }
    )
    c = await Legacy.open(d)
    await c.next()
    refused = await c.call("execute", {"command": "rm -rf /nonexistent"})
    assert refused["error"]["code"] == -32001 and "no rm -rf" in refused["error"]["message"], refused
    assert refused["error"]["data"]["ccxd_code"] == -32007

    unix = RawConnection(d.socket)
    busy = unix.call("job.start", {"command": "sleep 30"})["result"]["id"]
    full = await c.call("execute", {"command": "echo queued"})
    assert full["error"]["code"] == -32603 and full["error"]["data"]["ccxd_code"] == -32002, full
    assert "queue full" in full["error"]["message"]
    unix.call("job.cancel", {"job_id": busy})
    await c.ws.close()
