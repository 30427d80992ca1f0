"""The errors a client is meant to see: domain errors, and the JSON-RPC error they become.

The supervisor raises a :class:`JobError` when it refuses a request: its
message says why, in words for people, and its attributes carry the facts; it
knows nothing of JSON-RPC.  The RPC layer turns each into an :class:`RpcError`
(code, message, data) in one place, ``ccxd/rpc/errors.py``.  Other parts still
raise an :class:`RpcError` directly (hooks, cgroups, worktrees, a method's own
params).
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from ccxd.protocol import ErrorCode

__all__ = [
    "HistoryUnavailable",
    "InvalidRequest",
    "JobError",
    "JobNotActive",
    "QueueFull",
    "RpcError",
    "ShuttingDown",
    "UnknownJob",
    "UnknownNode",
]


class JobError(Exception):
    """A request the supervisor refuses; ``message`` says why, for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownJob(JobError):
    """No job with this id is known."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class UnknownNode(JobError):
    """No node of the fleet has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no node named {name!r} (ccxctl nodes lists them)")
        self.name = name


class JobNotActive(JobError):
    """The job has no processes to act on (``state``: its state, when the answer names it)."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class ShuttingDown(JobError):
    """The daemon takes no new jobs: it is stopping."""

    def __init__(self) -> None:
        super().__init__("ccxd is shutting down; no new jobs")


class QueueFull(JobError):
    """``max_queued_jobs`` jobs wait already."""

    def __init__(self, queued: int) -> None:
        super().__init__(f"queue full: {queued} jobs waiting (max_queued_jobs)")
        self.queued = queued


class InvalidRequest(JobError):
    """A job cannot be made from these params (the message says which and where)."""


class HistoryUnavailable(JobError):
    """The answer needs the store, which does not answer."""


class RpcError(Exception):
    """An error a client is meant to see, with its JSON-RPC code."""

    def __init__(self, code: ErrorCode, message: str, data: Any = UNSET) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def job_not_found(cls, job_id: str) -> RpcError:
        """No job with this id is known."""
        return cls(ErrorCode.JOB_NOT_FOUND, f"no job with id {job_id!r}", {"job_id": job_id})
