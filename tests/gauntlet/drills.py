"""What every drill checks at its end: the daemon answers, records are complete, nothing leaked."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.daemon import proc_fd_targets
from tests.helpers import RawConnection, job_pids


def daemon_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def describe_new_fds(pid: int, before: dict[int, str]) -> str:
    """A readable account of the descriptors opened since ``before``, for a failure message."""
    import subprocess

    now = proc_fd_targets(pid)
    new = {fd: t for fd, t in now.items() if before.get(fd) != t}
    gone = {fd: t for fd, t in before.items() if now.get(fd) != t}
    ss = subprocess.run(["ss", "-axpn"], capture_output=True, text=True).stdout.splitlines()
    lines = [f"new fds: {new}", f"gone fds: {gone}"]
    for target in new.values():
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            lines += [ln for ln in ss if f" {m.group(1)} " in ln]
    return "\n".join(lines)


def daemon_rss(pid: int) -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError("no VmRSS")


def assert_drill_ends_clean(socket_path: Path, job_ids: list[str] = ()) -> dict:  # type: ignore[assignment]
    """``daemon.status`` answers, every job has a finished record, and no job process is alive."""
    conn = RawConnection(socket_path)
    try:
        status = conn.call("daemon.status")
        assert "result" in status, status
        for i, job_id in enumerate(job_ids):
            reply = conn.call("job.get", {"job_id": job_id}, req_id=100 + i)
            assert "result" in reply, f"job {job_id} has no record: {reply}"
            assert reply["result"]["state"] == "finished", reply["result"]
            assert job_pids(job_id) == [], f"job {job_id} left processes behind"
        return status["result"]
    finally:
        conn.close()
