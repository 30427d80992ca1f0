"""Domain errors as JSON-RPC errors: the one place a refusal gets its code and data."""

from __future__ import annotations

from msgspec import UNSET

from ccxd.errors import (
    HistoryUnavailable,
    InvalidRequest,
    JobError,
    JobNotActive,
    QueueFull,
    RpcError,
    ShuttingDown,
    UnknownJob,
    UnknownNode,
)
from ccxd.protocol import ErrorCode

__all__ = ["rpc_error"]


def rpc_error(exc: JobError | RpcError) -> RpcError:
    """The JSON-RPC error a client gets for ``exc`` (an :class:`RpcError` is one already)."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, UnknownJob):
        return RpcError.job_not_found(exc.job_id)
    if isinstance(exc, UnknownNode):
        return RpcError(ErrorCode.NODE_NOT_FOUND, exc.message, {"name": exc.name})
    if isinstance(exc, JobNotActive):
        data = {"state": exc.state} if exc.state is not None else UNSET
        return RpcError(ErrorCode.JOB_NOT_ACTIVE, exc.message, data)
    if isinstance(exc, QueueFull):
        return RpcError(ErrorCode.QUEUE_FULL, exc.message, {"queued": exc.queued})
    if isinstance(exc, ShuttingDown):
        return RpcError(ErrorCode.SHUTTING_DOWN, exc.message)
    if isinstance(exc, HistoryUnavailable):
        return RpcError(ErrorCode.STORE_UNAVAILABLE, exc.message)
    if isinstance(exc, InvalidRequest):
        return RpcError(ErrorCode.INVALID_PARAMS, exc.message)
    return RpcError(ErrorCode.INTERNAL_ERROR, exc.message)
