"""The exceptions that become JSON-RPC errors."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from ccxd.protocol import ErrorCode

__all__ = ["RpcError"]


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
