"""Names and value types every message shares: versions, error codes, job states, streams, sizes."""

from __future__ import annotations

import enum
from typing import Annotated, Final, Literal

from msgspec import Meta

__all__ = [
    "JSONRPC_VERSION",
    "SIZE_PATTERN",
    "STREAMS",
    "STREAM_CODES",
    "TIMEOUT_EXIT_CODE",
    "Cpus",
    "Encoding",
    "ErrorCode",
    "GroupName",
    "IoWeight",
    "JobReason",
    "JobState",
    "PidsLimit",
    "RequestId",
    "Seconds",
    "Size",
    "Stream",
    "TimeoutSeconds",
    "shell_exit_code",
    "signal_exit_code",
]

JSONRPC_VERSION: Final = "2.0"

RequestId = int | str | None


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the spec's own, then ccxd's application codes."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Application errors live in the spec's "server error" range.
    JOB_NOT_FOUND = -32001
    QUEUE_FULL = -32002
    JOB_NOT_ACTIVE = -32003
    UNAUTHORIZED = -32005
    SHUTTING_DOWN = -32006
    HOOK_REFUSED = -32007  # reserved for pre-execution hooks
    STORE_UNAVAILABLE = -32009
    SESSION_NOT_FOUND = -32010
    BUDGET_SPENT = -32011
    """A Claude job refused: the daemon's daily or monthly Claude budget is spent."""
    NODE_NOT_FOUND = -32012
    """No node of the fleet has this name."""


class JobState(enum.StrEnum):
    """Where a job is in its life: queued → starting → running → finished."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class JobReason(enum.StrEnum):
    """Why a finished job finished."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    KILLED = "killed"
    FAILED_TO_START = "failed_to_start"
    LOST = "lost"
    OOM = "oom"
    DEPENDENCY_FAILED = "dependency_failed"
    """A job it waited for (``after``) did not succeed; ``error`` says which and how it ended."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """A Claude job's cost passed its ``max_budget_usd`` (the CLI's ``--max-budget-usd`` ended it,
    or ccxd did when the cost it reported passed the budget)."""


TIMEOUT_EXIT_CODE: Final = 124
"""What a shell's ``timeout`` exits with, and so what a job that hit its timeout reports."""


Stream = Literal["stdout", "stderr"]
STREAMS: Final[tuple[Stream, Stream]] = ("stdout", "stderr")
"""Stream names by code: 0 is stdout, 1 is stderr (so the spool, the shim and binary frames number them)."""
STREAM_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(STREAMS)}
Encoding = Literal["utf-8", "base64"]
Seconds = Annotated[float, Meta(gt=0, le=366 * 86400)]
TimeoutSeconds = Annotated[float, Meta(ge=0, le=366 * 86400)]
SIZE_PATTERN: Final = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"
Size = Annotated[int, Meta(ge=1)] | Annotated[str, Meta(pattern=SIZE_PATTERN)]
"""Bytes: an integer, or text such as ``"512M"``, ``"2G"``, ``"1.5GiB"`` (powers of 1024)."""
Cpus = Annotated[float, Meta(gt=0, le=4096)]
PidsLimit = Annotated[int, Meta(ge=1, le=4_194_304)]
IoWeight = Annotated[int, Meta(ge=1, le=10_000)]
GroupName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
"""A queue group: letters, digits, ``_.@-``, up to 64 characters."""


def shell_exit_code(reason: str | None, exit_code: int | None, signal: int | None) -> int | None:
    """A finished job's status as a shell reports it: 124 for a timeout, 128+N for signal N, else its code.

    None when there is none (the job never ran).  ``ccxctl run``, ``ExecResult.exit_code``
    and cc_executor's ``process.completed`` start from this; each adds its own rule for a job
    that never ran.
    """
    if reason in (JobReason.TIMEOUT, JobReason.IDLE_TIMEOUT):
        return TIMEOUT_EXIT_CODE
    if signal is not None:
        return signal_exit_code(signal)
    return exit_code


def signal_exit_code(signal: int) -> int:
    """What a shell reports for a process killed by signal N: 128 + N."""
    return 128 + signal
