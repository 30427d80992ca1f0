"""A Claude job whose node dies runs again on another node, resuming its session (the real CLI, fake API)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.claude.cli import claude_env, pinned_cli
from tests.claude.fake_api import FakeApi, Stream
from tests.fleet.harness import Fleet, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.claude_cli, pytest.mark.timeout(240)]


def test_a_claude_job_lost_with_its_node_resumes_its_session_on_another() -> None:
    api = FakeApi().start()
    try:
        with tempfile.TemporaryDirectory(prefix="ccxd-claude-home-") as home_dir:
            home = Path(home_dir)
            # A long first answer (the node dies during it), then the re-run's.
            api.script(Stream(text="x" * 4000, piece=20, delay=0.1), Stream(text="went on"))
            settings = {"claude_program": pinned_cli(), "claude_retry": False}
            with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=2, extra=settings) as fleet:
                # Not pinned (a pinned job waits for its node): A cordoned until it runs on B.
                fleet["A"].call("node.cordon", {"name": "A"})
                params = {"kind": "claude", "prompt": "tell a story", "cwd": str(home)}
                params["env"] = claude_env(api, home)
                queued = fleet["A"].call("job.start", params)

                def running_with_session() -> dict[str, Any] | None:
                    info: dict[str, Any] = fleet["A"].call("job.get", {"job_id": queued["id"]})
                    session = (info.get("claude") or {}).get("session_id")
                    return info if info["state"] == "running" and session and info.get("output_bytes") else None

                # A asks B for the running job: its output so far, not the record of its start.
                first = wait_until(running_with_session, 60, "the Claude job running on B with output")
                session = first["claude"]["session_id"]
                assert first["node"] == "B"
                fleet["A"].call("node.uncordon", {"name": "A"})
                fleet.kill9("B")

                def rerun() -> dict[str, Any] | None:
                    lost: dict[str, Any] = fleet["A"].call("job.get", {"job_id": queued["id"]})
                    if lost["state"] != "finished" or not lost.get("retried_by"):
                        return None
                    again: dict[str, Any] = fleet["A"].call("job.get", {"job_id": lost["retried_by"]})
                    return again if again["state"] == "finished" else None

                again = wait_until(rerun, 90, "the lost Claude job run again on A and finished")
                lost = fleet["A"].call("job.get", {"job_id": queued["id"]})
                assert lost["reason"] == "lost" and lost["node"] == "B"
                assert again["node"] == "A" and again["retry_of"] == queued["id"]
                assert "--resume" in again["argv"] and session in again["argv"]
                assert again["exit_code"] == 0 and again["claude"]["result"] == "went on"
    finally:
        api.stop()
