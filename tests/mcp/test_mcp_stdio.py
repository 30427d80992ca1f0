"""``ccxctl mcp`` over stdio, driven by the ``mcp`` SDK's own client against a real daemon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from mcp_types import TextResourceContents

from tests.conftest import DaemonProcess
from tests.mcp.helpers import call, mcp_session, text_of

TOOLS = {
    "ccxd_submit", "ccxd_status", "ccxd_wait", "ccxd_logs", "ccxd_cancel", "ccxd_history", "ccxd_sessions",
}  # fmt: skip


async def test_tools_are_listed_with_descriptions(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon) as session:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        templates = (await session.list_resource_templates()).resource_templates
    assert set(listed) == TOOLS
    assert all(len(t.description or "") > 60 for t in listed.values())
    assert listed["ccxd_wait"].input_schema["required"] == ["job_id"]
    assert {t.uri_template for t in templates} == {"ccxd://job/{job_id}/output", "ccxd://job/{job_id}/record"}


async def test_submit_wait_logs_and_resources(daemon: DaemonProcess, tmp_path: Path) -> None:
    async with mcp_session(daemon, cwd=tmp_path) as session:
        started = await call(session, "ccxd_submit", command="echo hi; sleep 1; echo bye; pwd")
        job_id = started["job_id"]
        assert started["finished"] is False and "ccxd_wait" in started["note"]  # answered at once

        done = await call(session, "ccxd_wait", job_id=job_id, timeout=20)
        assert done["finished"] is True and done["outcome"] == "exit 0" and done["exit_code"] == 0
        assert done["output"] == f"hi\nbye\n{tmp_path}\n"  # ran where the MCP server runs

        first = await call(session, "ccxd_logs", job_id=job_id, max_bytes=3)
        assert first["text"] == "hi\n" and first["eof"] is False and first["next_offset"] == 3
        rest = await call(session, "ccxd_logs", job_id=job_id, offset=first["next_offset"])
        assert rest["text"] == f"bye\n{tmp_path}\n" and rest["eof"] is True

        status = await call(session, "ccxd_status", job_id=job_id)
        # ~1 s (sleep 1): the daemon stamps start and end as it sees them, a few ms off either way.
        assert status["outcome"] == "exit 0" and 0.9 <= status["duration_s"] < 10

        output = await session.read_resource(f"ccxd://job/{job_id}/output")
        record = await session.read_resource(f"ccxd://job/{job_id}/record")
    assert isinstance(output.contents[0], TextResourceContents)
    assert output.contents[0].text == f"hi\nbye\n{tmp_path}\n"
    assert isinstance(record.contents[0], TextResourceContents)
    rec = json.loads(record.contents[0].text)
    assert (
        rec["id"] == job_id and rec["exit_code"] == 0 and rec["command"] == "echo hi; sleep 1; echo bye; pwd"
    )
    client = await daemon.client()
    try:
        assert (await client.get(job_id)).exit_code == 0  # the daemon ran it, not the bridge
    finally:
        await client.close()


async def test_submit_with_wait_answers_with_the_output(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon) as session:
        done = await call(session, "ccxd_submit", command="echo out; echo err >&2; exit 3", wait=20)
    assert done["finished"] is True and done["outcome"] == "exit 3"
    assert sorted(done["output"].splitlines()) == ["err", "out"]


async def test_over_websocket_with_the_token(daemon: DaemonProcess, tmp_path: Path) -> None:
    async with mcp_session(daemon, cwd=tmp_path, url=daemon.ws_url) as session:
        done = await call(session, "ccxd_submit", command="echo remote", wait=20)
        here = await call(session, "ccxd_submit", command="pwd", cwd=str(tmp_path), wait=20)
    assert done["outcome"] == "exit 0" and done["output"] == "remote\n"
    # A remote daemon is not told the bridge's directory: it picks its own unless one is named.
    assert done["cwd"] != str(tmp_path) and here["output"] == f"{tmp_path}\n"


async def test_wait_is_bounded_and_cancel_stops_a_long_job(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon) as session:
        job_id = (await call(session, "ccxd_submit", command="echo started; exec sleep 300"))["job_id"]
        waited = await call(session, "ccxd_wait", job_id=job_id, timeout=1)
        assert waited["finished"] is False and "still running" in waited["note"]
        # A wait longer than the bound is cut to it: the call answers, the job goes on.
        assert (await call(session, "ccxd_status", job_id=job_id))["state"] == "running"

        await call(session, "ccxd_cancel", job_id=job_id)
        done = await call(session, "ccxd_wait", job_id=job_id, timeout=20)
    assert done["finished"] is True and done["outcome"] == "cancelled"
    assert done["output"] == "started\n"


async def test_concurrent_waits_for_one_job_all_see_it_finish(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon) as session:
        job_id = (await call(session, "ccxd_submit", command="sleep 1; echo done"))["job_id"]
        loop = asyncio.get_running_loop()
        began = loop.time()
        waits = [call(session, "ccxd_wait", job_id=job_id, timeout=50) for _ in range(3)]
        answers = await asyncio.gather(*waits)
        took = loop.time() - began
    assert [a["outcome"] for a in answers] == ["exit 0"] * 3
    assert [a["output"] for a in answers] == ["done\n"] * 3
    # None sat out its 50 s bound because another waiter took the job's events.
    assert took < 30


async def test_history_and_sessions(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon) as session:
        ok = await call(session, "ccxd_submit", command="echo alpha-marker", session="build", wait=20)
        bad = await call(session, "ccxd_submit", command="exit 7", session="build", wait=20)
        assert ok["outcome"] == "exit 0" and bad["outcome"] == "exit 7"

        found = await call(session, "ccxd_history", grep="alpha-marker", since="1h")
        assert [j["job_id"] for j in found["jobs"]] == [ok["job_id"]]
        grouped = await call(session, "ccxd_history", session="build", limit=10)
        assert {j["job_id"] for j in grouped["jobs"]} == {ok["job_id"], bad["job_id"]}
        sessions = await call(session, "ccxd_sessions")
        assert [(s["name"], s["jobs"]) for s in sessions["sessions"]] == [("build", 2)]

        wrong = await session.call_tool("ccxd_history", {"since": "yesterday-ish"})
        assert wrong.is_error and "2h, 1d" in text_of(wrong)


async def test_errors_are_told_to_the_model(daemon: DaemonProcess, tmp_root: Path) -> None:
    async with mcp_session(daemon) as session:
        missing = await session.call_tool("ccxd_status", {"job_id": "nope"})
        both = await session.call_tool("ccxd_submit", {"command": "true", "prompt": "hi"})
    assert missing.is_error and "no job with id 'nope'" in text_of(missing)
    assert both.is_error and "exactly one of `command`" in text_of(both)

    daemon.stop()  # no daemon: the tool says how to start one (the server itself keeps serving)
    async with mcp_session(daemon) as session:
        down = await session.call_tool("ccxd_sessions", {})
    assert down.is_error and "start it with `ccxd`" in text_of(down)


def test_without_the_sdk_it_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['mcp'] = None; from ccxctl.__main__ import main; sys.exit(main(['mcp']))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == "ccxctl: `ccxctl mcp` needs the MCP SDK: pip install 'ccxd[mcp]'\n"
