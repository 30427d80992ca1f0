"""What the MCP tools answer, made from ccxd's records (no I/O).

A model reads these: plain JSON-able dicts with few, well-named fields, times as
ISO 8601 UTC strings, and a ``note`` saying what to do next whenever the answer
is "not yet".
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ccxd.protocol import JobInfo, OutputChunk

__all__ = [
    "LOGS_MAX_BYTES",
    "TAIL_BYTES",
    "WAIT_MAX",
    "clamp_bytes",
    "clamp_wait",
    "job_summary",
    "logs_result",
    "output_text",
    "since_epoch",
    "still_running",
]

WAIT_MAX = 50.0
"""The longest a tool call waits for a job (MCP clients time a call out after about a minute)."""

LOGS_MAX_BYTES = 64 * 1024
"""The most output one ``ccxd_logs`` call returns."""

TAIL_BYTES = 8 * 1024
"""How much of a finished job's output ``ccxd_wait`` and ``ccxd_submit`` show (its end)."""

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SCALE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _outcome(job: JobInfo) -> str:
    """``running``, ``exit 0``, ``signal 9``, ``timeout``, ``cancelled`` … in a few words."""
    if job.state != "finished":
        return str(job.state)
    if job.reason == "exited":
        return f"exit {job.exit_code}"
    if job.reason == "killed" and job.signal is not None:
        return f"signal {job.signal}"
    return str(job.reason)


def job_summary(job: JobInfo) -> dict[str, Any]:
    """The fields of ``job`` a caller acts on; None-valued ones left out."""
    out: dict[str, Any] = {
        "job_id": job.id,
        "state": str(job.state),
        "finished": job.state == "finished",
        "outcome": _outcome(job),
        "command": job.command if isinstance(job.command, str) else " ".join(job.command),
        "cwd": job.cwd,
        "session": job.session,
        "exit_code": job.exit_code,
        "signal": job.signal,
        "error": job.error,
        "queued_at": _iso(job.queued_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "duration_s": None if job.duration is None else round(job.duration, 3),
        "timeout_s": job.timeout,
        "output_bytes": job.output_bytes,
    }
    if job.claude is not None:
        claude = job.claude
        out["claude"] = {
            k: v
            for k, v in {
                "session_id": claude.session_id,
                "ok": claude.ok,
                "result": claude.result,
                "error_class": claude.error_class,
                "error": claude.error,
                "cost_usd": claude.cost_usd,
                "turns": claude.turns,
            }.items()
            if v is not None
        }
    return {k: v for k, v in out.items() if v is not None}


def still_running(job: JobInfo, waited: float) -> dict[str, Any]:
    """The answer of a wait that ended before the job did."""
    out = job_summary(job)
    out["note"] = (
        f"still {job.state} after waiting {waited:g} s: call ccxd_wait again to keep waiting, "
        "ccxd_logs to read its output so far, or ccxd_cancel to stop it"
    )
    return out


def output_text(chunks: list[OutputChunk]) -> str:
    """The chunks' bytes (stdout and stderr as they were read) as text; bad UTF-8 replaced."""
    return b"".join(c.raw() for c in chunks).decode("utf-8", "replace")


def logs_result(chunks: list[OutputChunk], next_offset: int, eof: bool, gap: bool) -> dict[str, Any]:
    """What ``ccxd_logs`` answers for one page of output."""
    out: dict[str, Any] = {"text": output_text(chunks), "next_offset": next_offset, "eof": eof}
    if gap:
        out["gap"] = "some output before this was no longer kept (the job printed more than ccxd keeps)"
    if not eof:
        out["note"] = f"more may follow: call ccxd_logs again with offset={next_offset}"
    return out


def clamp_wait(seconds: float | None, default: float) -> float:
    """A wait in seconds within 0 … :data:`WAIT_MAX`."""
    if seconds is None:
        return default
    return max(0.0, min(float(seconds), WAIT_MAX))


def clamp_bytes(max_bytes: int | None) -> int:
    """A page size within 1 … :data:`LOGS_MAX_BYTES`."""
    if max_bytes is None:
        return LOGS_MAX_BYTES
    return max(1, min(int(max_bytes), LOGS_MAX_BYTES))


def since_epoch(text: str, now: float) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` before ``now``; an ISO date or time; or epoch seconds.

    Raises ValueError naming the forms it takes.
    """
    m = _AGO.match(text)
    if m:
        return now - float(m.group(1)) * _SCALE[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"since: cannot read {text!r}: use 2h, 1d, 2026-11-24 or epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
