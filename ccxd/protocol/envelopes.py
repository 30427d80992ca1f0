"""JSON-RPC 2.0 envelopes (requests, replies, notifications) and the codec helpers both ends share."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from ccxd.protocol.common import JSONRPC_VERSION, ErrorCode, RequestId
from ccxd.protocol.jobs import OutputChunk

__all__ = [
    "OUTPUT_NOTIFICATION_PREFIX",
    "ErrorObject",
    "ErrorResponse",
    "Notification",
    "OutputNotification",
    "Reply",
    "Request",
    "Response",
    "encode",
    "error",
]


class Request(Struct, omit_defaults=True):
    """A JSON-RPC request, or a notification when ``id`` is unset."""

    method: str
    jsonrpc: Literal["2.0"]
    params: Raw | UnsetType = UNSET
    id: RequestId | UnsetType = UNSET


class ErrorObject(Struct, omit_defaults=True):
    """The ``error`` member of an error response."""

    code: int
    message: str
    data: Any | UnsetType = UNSET


class Response(Struct):
    """A successful reply."""

    id: RequestId
    result: Any
    jsonrpc: str = JSONRPC_VERSION


class ErrorResponse(Struct):
    """A failed reply."""

    id: RequestId
    error: ErrorObject
    jsonrpc: str = JSONRPC_VERSION


class Notification(Struct):
    """A server → client notification (no ``id``)."""

    method: str
    params: Any
    jsonrpc: str = JSONRPC_VERSION


class OutputNotification(Struct):
    """A ``job.output`` notification decoded in one pass (the client's hot path)."""

    method: Literal["job.output"]
    params: OutputChunk
    jsonrpc: str = JSONRPC_VERSION


OUTPUT_NOTIFICATION_PREFIX: Final = b'{"method":"job.output",'
"""How every ``job.output`` line the daemon sends begins (fields encode in definition order)."""


class Reply(Struct, omit_defaults=True):
    """What a client decodes from the wire before it knows the result type."""

    jsonrpc: str = JSONRPC_VERSION
    id: RequestId | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET


_encoder = msgspec.json.Encoder()


def encode(message: Struct) -> bytes:
    """Encode one message as compact JSON (no trailing newline)."""
    return _encoder.encode(message)


def error(req_id: RequestId, code: ErrorCode, message: str, data: Any = UNSET) -> ErrorResponse:
    """Build an error response."""
    return ErrorResponse(id=req_id, error=ErrorObject(code=int(code), message=message, data=data))
