"""Params of every server notification; :data:`NOTIFICATIONS` maps each name to its type."""

from __future__ import annotations

from typing import Final

from msgspec import Struct

from ccxd.protocol.claude_events import ClaudeEvent
from ccxd.protocol.envelopes import Notification
from ccxd.protocol.hooks import HookEvent
from ccxd.protocol.jobs import JobInfo, OutputChunk, Usage

__all__ = [
    "NOTIFICATIONS",
    "ClaudeEventNote",
    "JobFinished",
    "JobQueued",
    "JobRetry",
    "JobStarted",
    "JobStats",
    "OutputCut",
    "OutputGap",
    "notification",
]


class JobQueued(Struct, omit_defaults=True):
    """``job.queued``: the job waits for a slot at ``position`` (1 = next), or until ``wait_until``."""

    job_id: str
    position: int
    wait_until: float | None = None
    wait_reason: str | None = None


class JobStarted(Struct):
    """``job.started``: the process is running, with the timeout in force and its basis."""

    job_id: str
    pid: int
    pgid: int
    timeout: float | None = None
    timeout_basis: str | None = None
    timeout_silence: float | None = None
    """Set for an estimated timeout: it ends the job only after this long without output."""


class JobFinished(Struct):
    """``job.finished``: the final record of the job."""

    job: JobInfo


class OutputGap(Struct):
    """``job.gap``: output in [start, end) is no longer available to this subscriber."""

    job_id: str
    start: int
    end: int
    reason: str


class OutputCut(Struct):
    """``job.output_cut``: the job exceeded its output cap; later output is not kept."""

    job_id: str
    offset: int
    limit: int


class ClaudeEventNote(Struct, kw_only=True):
    """``claude.event``: one stream-json event of a Claude job, parsed.

    ``event.kind`` names it (``init``, ``assistant``, ``user``, ``api_retry``,
    ``rate_limit``, ``stream_event``, ``system``, ``result``, ``unknown``,
    ``text``, ``oversize``).  ``offset`` is the end of the output that held it:
    it follows the ``job.output`` that carries its line.
    """

    job_id: str
    seq: int
    offset: int
    event: ClaudeEvent


class JobRetry(Struct, kw_only=True, omit_defaults=True):
    """``job.retry``: a Claude job failed retryably; ``next_job_id`` is attempt ``attempt``."""

    job_id: str
    next_job_id: str
    attempt: int
    error_class: str
    reason: str
    delay: float = 0.0
    """Seconds until the next attempt may start."""
    wait_until: float | None = None
    max_output_tokens: int | None = None
    """CLAUDE_CODE_MAX_OUTPUT_TOKENS of the next attempt, when it changed."""
    concision_level: int = 0
    """Concision instructions added to the next attempt's prompt (0–3)."""


class JobStats(Struct):
    """``job.stats``: a resource sample of a running job (``job.subscribe`` with ``stats``)."""

    job_id: str
    usage: Usage

NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "job.queued": JobQueued,
    "job.started": JobStarted,
    "job.output": OutputChunk,
    "job.gap": OutputGap,
    "job.output_cut": OutputCut,
    "job.finished": JobFinished,
    "job.retry": JobRetry,
    "job.stats": JobStats,
    "hook.pre_execution": HookEvent,
    "hook.post_execution": HookEvent,
    "hook.error": HookEvent,
    "claude.event": ClaudeEventNote,
}


def notification(method: str, params: Struct) -> Notification:
    """Build a notification, checking that ``method`` is one ccxd defines."""
    if method not in NOTIFICATIONS:
        raise KeyError(method)
    return Notification(method=method, params=params)
