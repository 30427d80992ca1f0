"""cc_executor compatibility: the methods and notifications its WebSocket clients speak.

They are served on ``/ws`` and ``/ws/mcp`` next to the native methods on every
WebSocket connection (names cannot clash: native names have a dot), run real
ccxd jobs (tagged ``cc_executor``), and fix cc_executor's bugs: real exit
codes, 124 for a timeout, -32700 for bad JSON, ids kept, clean close codes.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from ccxd.protocol.common import Stream, TimeoutSeconds
from ccxd.protocol.envelopes import Notification
from ccxd.protocol.job_methods import Ok

__all__ = [
    "LEGACY_METHODS",
    "LEGACY_NOTIFICATIONS",
    "ClaudeErrorNotice",
    "Connected",
    "ControlParams",
    "ControlResult",
    "ExecuteParams",
    "ExecuteResult",
    "HookStatusResult",
    "LegacyParams",
    "LegacyPing",
    "ProcessCompleted",
    "ProcessError",
    "ProcessOutput",
    "ProcessStatus",
    "legacy_notification",
]


class ExecuteParams(Struct, kw_only=True):
    """``execute``: run ``command`` with ``$SHELL -c``; other members are ignored."""

    command: Annotated[str, Meta(min_length=1)]
    timeout: TimeoutSeconds | None = None
    """Seconds; unset or 0 means none, as in cc_executor (``idle_timeout`` still applies)."""


class ExecuteResult(Struct):
    """``execute`` result, sent once the process runs (queued jobs wait for a slot)."""

    status: Literal["started"]
    pid: int
    pgid: int
    job_id: str
    """The ccxd job (``ccxctl ps``, ``job.subscribe``); an addition to cc_executor's result."""


class ControlParams(Struct, kw_only=True):
    """``control``: act on this connection's running ``execute`` job."""

    type: Literal["PAUSE", "RESUME", "CANCEL"]


class ControlResult(Struct):
    """``control`` result; a ``process.paused``/``resumed``/``canceled`` notification follows."""

    status: Literal["paused", "resumed", "canceled"]


class LegacyParams(Struct):
    """Params of ``pong`` and ``hook_status``: anything, ignored."""


class HookStatusResult(Struct):
    """``hook_status`` result: whether hooks are loaded, and their names (``point:name``)."""

    enabled: bool
    hooks: list[str]
    message: str


class Connected(Struct):
    """``connected``: the first message on every WebSocket connection."""

    session_id: str
    version: str
    capabilities: list[str]


class ProcessStatus(Struct):
    """``process.started``/``paused``/``resumed``/``canceled``."""

    status: Literal["started", "paused", "resumed", "canceled"]
    pid: int | None
    pgid: int | None
    job_id: str


class ProcessOutput(Struct):
    """``process.output``: one line of a stream (newline included), as text, as cc_executor sent it.

    A line longer than 64 KiB comes in pieces of at most 64 KiB, never cut inside
    a UTF-8 character; only the last piece ends with the newline.  A last line
    without a newline comes when the job ends.  Bytes that are not UTF-8 arrive
    as U+FFFD (use native ``job.subscribe`` for exact bytes).  ``truncated`` is
    true when output before this line was lost to this client (evicted from
    memory and the spool).
    """

    type: Stream
    data: str
    job_id: str
    truncated: bool = False
    chunk_index: int | UnsetType = UNSET
    total_chunks: int | UnsetType = UNSET


class ProcessCompleted(Struct, kw_only=True):
    """``process.completed``: the real exit code; a timeout is ``failed`` with 124.

    A process killed by signal N reports ``128 + N`` (as a shell would) and ``signal``.
    """

    status: Literal["completed", "failed"]
    pid: int | None
    pgid: int | None
    exit_code: int | None
    execution_time: float
    job_id: str
    reason: str
    signal: int | None = None


class ProcessError(Struct, omit_defaults=True):
    """``process.failed`` (the job could not run) or ``process.error`` (following it failed)."""

    error: str
    job_id: str | None = None


class ClaudeErrorNotice(Struct, kw_only=True, omit_defaults=True):
    """cc_executor's ``error.*`` notifications: a Claude job failed (sent before ``process.completed``).

    ``error.token_limit_exceeded``, ``error.rate_limit_exceeded``, ``error.service_unavailable``
    and ``error.authentication_failed`` carry it.  ``recoverable`` is true when ccxd retries
    it (``next_job_id`` is the next attempt).
    """

    session_id: str
    """The connection's ``connected`` session id."""
    job_id: str
    error_type: str
    """``token_limit``, ``usage_limit``, ``rate_limit_429``, ``overloaded``, ``api_error``, ``network``,
    ``auth``."""
    message: str
    error_text: str = ""
    recoverable: bool = False
    limit: int | None = None
    """``token_limit``: the output token maximum that was hit."""
    suggestion: str | None = None
    reset_timestamp: int | None = None
    """``usage_limit``: when the limit resets (epoch seconds)."""
    retry_after: float | None = None
    """Seconds until the next attempt."""
    next_job_id: str | None = None


class LegacyPing(Struct):
    """``ping``: sent every ``ws_legacy_ping_interval`` seconds; clients may answer ``pong``."""

    timestamp: float


LEGACY_METHODS: Final[dict[str, tuple[type[Struct], type[Struct]]]] = {
    "execute": (ExecuteParams, ExecuteResult),
    "control": (ControlParams, ControlResult),
    "pong": (LegacyParams, Ok),
    "hook_status": (LegacyParams, HookStatusResult),
}

LEGACY_NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "connected": Connected,
    "ping": LegacyPing,
    "process.started": ProcessStatus,
    "process.output": ProcessOutput,
    "process.completed": ProcessCompleted,
    "process.failed": ProcessError,
    "process.error": ProcessError,
    "process.paused": ProcessStatus,
    "process.resumed": ProcessStatus,
    "process.canceled": ProcessStatus,
    "error.token_limit_exceeded": ClaudeErrorNotice,
    "error.rate_limit_exceeded": ClaudeErrorNotice,
    "error.service_unavailable": ClaudeErrorNotice,
    "error.authentication_failed": ClaudeErrorNotice,
}


def legacy_notification(method: str, params: Struct) -> Notification:
    """Build a cc_executor notification, checking that ``method`` is one."""
    if method not in LEGACY_NOTIFICATIONS:
        raise KeyError(method)
    return Notification(method=method, params=params)
