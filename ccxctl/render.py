"""Showing results: aligned tables on a terminal, tab-separated text when piped, JSON on request."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import msgspec

from ccxd.protocol import JobInfo

__all__ = ["describe_outcome", "emit_json", "human_duration", "job_rows", "table"]


def emit_json(value: object) -> None:
    """Print ``value`` (Structs, lists, dicts) as one JSON document."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows: padded columns on a terminal, tab-separated when piped."""
    if not sys.stdout.isatty():
        print("\t".join(headers))
        for row in rows:
            print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
        return
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    # The last column (usually the command) is not padded, so long commands wrap naturally.
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def human_duration(seconds: float | None) -> str:
    """``1.23s``, ``4m05s``, ``2h03m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def describe_outcome(job: JobInfo) -> str:
    """A short outcome: ``exit 0``, ``signal 9``, ``timeout``, ``queued #3``, ``waiting until 14:05``."""
    text = _outcome(job)
    if job.attempt > 1:
        text += f" (attempt {job.attempt})"
    if job.retried_by:
        text += f" → retried as {job.retried_by}"
    return text


def _outcome(job: JobInfo) -> str:
    if job.state == "queued":
        if job.wait_until is not None:
            until = time.strftime("%H:%M", time.localtime(job.wait_until))
            return f"waiting until {until}" + (f" ({job.wait_reason})" if job.wait_reason else "")
        if job.wait_reason:
            return f"waiting ({job.wait_reason})"
        return f"queued #{job.queue_position}" if job.queue_position else "queued"
    if job.state != "finished":
        return str(job.state)
    reason = str(job.reason)
    if reason == "exited":
        return f"exit {job.exit_code}"
    if reason == "killed" and job.signal is not None:
        return f"signal {job.signal}"
    return reason


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def job_rows(jobs: Sequence[JobInfo]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for a list of jobs."""
    headers = ["id", "state", "outcome", "started", "duration", "command"]
    rows = []
    for j in jobs:
        command = j.command if isinstance(j.command, str) else " ".join(j.command)
        rows.append(
            [
                j.id,
                str(j.state),
                describe_outcome(j),
                _when(j.started_at or j.queued_at),
                human_duration(j.duration),
                command,
            ]
        )
    return headers, rows
