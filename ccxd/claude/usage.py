"""Claude cost and tokens summed per day and per session, from job records (no I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from msgspec import Struct

from ccxd.protocol import JobInfo, JobReason

__all__ = ["UsageRow", "by_day", "by_session", "succeeded", "usage_by"]


class UsageRow(Struct, kw_only=True):
    """The Claude jobs of one day or one session, summed."""

    key: str
    jobs: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    turns: int = 0


def succeeded(job: JobInfo) -> bool:
    """True when a finished Claude job gave its answer.

    A CLI that hung after a good result (``hung_after_result``) succeeded; a job
    that never started (no ``claude`` program), was cancelled, timed out or was
    lost did not, though the CLI said nothing to classify.
    """
    c = job.claude
    if c is not None and c.error_class == "hung_after_result":
        return True
    if c is not None and (c.error_class or c.ok is False):
        return False
    return job.reason == JobReason.EXITED and job.exit_code == 0


def usage_by(jobs: Iterable[JobInfo], key: Callable[[JobInfo], str]) -> list[UsageRow]:
    """Rows keyed by ``key(job)``, for jobs with Claude information, sorted by key."""
    rows: dict[str, UsageRow] = {}
    for job in jobs:
        c = job.claude
        if c is None:
            continue
        k = key(job)
        row = rows.get(k)
        if row is None:
            row = rows[k] = UsageRow(key=k)
        row.jobs += 1
        row.failed += 0 if succeeded(job) else 1
        row.cost_usd += c.cost_usd or 0.0
        row.input_tokens += c.input_tokens or 0
        row.output_tokens += c.output_tokens or 0
        row.cache_read_tokens += c.cache_read_tokens or 0
        row.turns += c.turns or 0
    return [rows[k] for k in sorted(rows)]


def by_day(jobs: Iterable[JobInfo], utc: bool = False) -> list[UsageRow]:
    """Per day (local time unless ``utc``) the job was queued."""
    conv = time.gmtime if utc else time.localtime
    return usage_by(jobs, lambda j: time.strftime("%Y-%m-%d", conv(j.queued_at)))


def by_session(jobs: Iterable[JobInfo]) -> list[UsageRow]:
    """Per Claude session id (``-`` when the CLI never said)."""
    return usage_by(jobs, lambda j: (j.claude.session_id if j.claude else None) or "-")
