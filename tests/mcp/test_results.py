"""What the MCP tools answer, made from records (no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest

from ccxd.mcp import results
from ccxd.protocol import ClaudeInfo, JobInfo, JobReason, JobState, OutputChunk


def _job(**kw: object) -> JobInfo:
    base: dict[str, object] = {"id": "j1", "state": JobState.FINISHED, "command": "make test", "cwd": "/src"}
    base.update(kw)
    return JobInfo(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"reason": JobReason.EXITED, "exit_code": 2}, "exit 2"),
        ({"reason": JobReason.KILLED, "signal": 9}, "signal 9"),
        ({"reason": JobReason.TIMEOUT}, "timeout"),
        ({"state": JobState.RUNNING}, "running"),
    ],
)
def test_outcome_in_words(fields: dict[str, object], outcome: str) -> None:
    summary = results.job_summary(_job(**fields))
    assert summary["outcome"] == outcome
    assert summary["finished"] is (fields.get("state", JobState.FINISHED) == JobState.FINISHED)


def test_summary_leaves_out_what_is_unknown_and_writes_times_in_utc() -> None:
    summary = results.job_summary(
        _job(command=["ls", "-l"], queued_at=0.0, started_at=1_800_000_000.0, duration=1.23456)
    )
    assert summary["command"] == "ls -l" and summary["duration_s"] == 1.235
    assert summary["started_at"] == "2027-01-15T08:00:00Z"
    assert "queued_at" not in summary and "exit_code" not in summary and "claude" not in summary


def test_claude_jobs_carry_their_result() -> None:
    claude = ClaudeInfo(session_id="s1", ok=True, result="done", cost_usd=0.01)
    summary = results.job_summary(_job(claude=claude))
    assert summary["claude"] == {"session_id": "s1", "ok": True, "result": "done", "cost_usd": 0.01}


def test_still_running_says_what_to_do_next() -> None:
    note = results.still_running(_job(state=JobState.RUNNING), 50)["note"]
    assert "still running after waiting 50 s" in note and "ccxd_wait" in note and "ccxd_cancel" in note


def test_logs_join_both_streams_and_say_where_to_read_on() -> None:
    chunks = [
        OutputChunk(job_id="j1", stream="stdout", seq=0, offset=0, data="a\n"),
        OutputChunk(job_id="j1", stream="stderr", seq=1, offset=2, data="/w==", encoding="base64"),
    ]
    page = results.logs_result(chunks, next_offset=4, eof=False, gap=True)
    assert page["text"] == "a\n\ufffd" and page["next_offset"] == 4
    assert "offset=4" in page["note"] and "no longer kept" in page["gap"]
    assert "note" not in results.logs_result([], 4, eof=True, gap=False)


def test_limits_are_clamped() -> None:
    assert results.clamp_wait(None, 30) == 30 and results.clamp_wait(600, 30) == results.WAIT_MAX
    assert results.clamp_wait(-5, 30) == 0
    assert results.clamp_bytes(None) == results.clamp_bytes(10**9) == results.LOGS_MAX_BYTES
    assert results.clamp_bytes(0) == 1


def test_since_takes_ages_dates_and_epochs() -> None:
    now = 1_000_000.0
    assert results.since_epoch("2h", now) == now - 7200
    assert results.since_epoch("90s", now) == now - 90
    assert results.since_epoch("12345", now) == 12345.0
    assert results.since_epoch("2026-11-24", now) == dt.datetime(2026, 11, 24, tzinfo=dt.UTC).timestamp()
    with pytest.raises(ValueError, match="use 2h, 1d"):
        results.since_epoch("last tuesday", now)
