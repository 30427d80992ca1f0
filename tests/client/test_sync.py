"""The blocking wrapper and the cc_executor drop-in, against a real daemon."""

from __future__ import annotations

import asyncio

from ccxd.client.compat import WebSocketClient
from ccxd.client.sync import SyncClient


def test_sync_client_runs_jobs_and_reports_exit_codes(daemon):
    with SyncClient(daemon.socket) as c:
        assert c.ping().pong
        r = c.execute("echo out; echo err >&2; exit 5")
        assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 5)
        killed = c.execute("kill -TERM $$")
        assert killed.exit_code == 128 + 15
        timed_out = c.execute("sleep 30", timeout=0.5)
        assert timed_out.exit_code == 124 and timed_out.job.reason == "timeout"
        job = c.start("sleep 30")
        assert c.get(job.id).state in ("starting", "running")
        assert c.cancel(job.id).id == job.id
        assert any(j.id == job.id for j in c.list())


def test_cc_executor_drop_in_over_the_unix_socket(daemon):
    # The drop-in takes any target URL; the WebSocket path is covered with the WS front-end.
    client = WebSocketClient(url=str(daemon.socket))
    result = asyncio.run(client.execute_command("echo hello; echo world; printf tail; exit 3"))
    assert result["success"] is True and result["exit_code"] == 3
    # As cc_executor's client: the output as one string, and one output per line.
    assert result["output_data"] == "hello\nworld\ntail" and result["outputs"] == 3
    timed = asyncio.run(client.execute_command("sleep 30", timeout=1))
    assert timed["success"] is False and timed["exit_code"] == 124 and "timed out" in timed["error"]
