"""The one dispatcher every transport shares: bytes in, reply bytes out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from msgspec import Struct

from ccxd.errors import JobError, RpcError
from ccxd.protocol import (
    METHODS,
    ErrorCode,
    ErrorResponse,
    Response,
    encode,
    error,
)
from ccxd.rpc.codec import Call, decode_params, parse
from ccxd.rpc.connection import Connection
from ccxd.rpc.errors import rpc_error

__all__ = ["CallHandler", "Dispatcher", "Handler"]

log = logging.getLogger("ccxd.rpc")

Handler = Callable[[Any, Connection], Awaitable[Struct]]
CallHandler = Callable[[Call, Connection], Awaitable[Response | ErrorResponse]]
"""Answers a whole call (its params, its errors): a method set of its own, such as cc_executor's."""


class Dispatcher:
    """Routes JSON-RPC calls to handlers and builds spec-conforming replies.

    Its table holds the native methods and, in a dispatcher made by
    :meth:`with_methods`, one more method set answered by its own handlers.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._calls: dict[str, CallHandler] = {}

    def with_methods(self, methods: Mapping[str, CallHandler]) -> Dispatcher:
        """A dispatcher serving the native methods (shared with this one) and ``methods`` beside them.

        A transport whose clients speak another method set too (the cc_executor
        API on WebSocket) hands its messages to this one: native calls are
        answered as here, with no adapter in between.
        """
        clash = set(methods) & set(METHODS)
        if clash:
            raise KeyError(f"{', '.join(sorted(clash))}: already protocol methods")
        extended = Dispatcher()
        extended._handlers = self._handlers  # one table: later registrations serve both
        extended._calls = {**self._calls, **methods}
        return extended

    def register(self, method: str, handler: Handler) -> None:
        """Serve ``method`` (which must be defined in the protocol) with ``handler``."""
        if method not in METHODS:
            raise KeyError(f"{method} is not a protocol method")
        self._handlers[method] = handler

    @property
    def methods(self) -> list[str]:
        """Methods this dispatcher serves."""
        return sorted([*self._handlers, *self._calls])

    async def handle(self, raw: bytes, conn: Connection) -> bytes | None:
        """Handle one wire message; return the encoded reply, or None when none is due."""
        parsed = parse(raw)
        replies: list[Response | ErrorResponse] = []
        calls = self._calls
        for item in parsed.calls:
            if isinstance(item, ErrorResponse):
                replies.append(item)
                continue
            answer = calls.get(item.method) if calls else None
            reply = await (answer or self.call)(item, conn)
            if not item.is_notification:
                replies.append(reply)
        if not replies:
            return None
        return encode(replies if parsed.batch else replies[0])  # type: ignore[arg-type]

    @staticmethod
    def wire_error(exc: JobError | RpcError) -> RpcError:
        """The JSON-RPC error a handler's refusal becomes (one mapping: ``rpc/errors.py``)."""
        return rpc_error(exc)

    async def call(self, call: Call, conn: Connection) -> Response | ErrorResponse:
        """Run one call and turn its outcome into a reply."""
        handler = self._handlers.get(call.method)
        if handler is None:
            return error(call.id, ErrorCode.METHOD_NOT_FOUND, f"method not found: {call.method!r}")
        try:
            params = decode_params(call.method, call.params)
        except ValueError as exc:
            return error(call.id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}")
        try:
            result = await handler(params, conn)
        except (JobError, RpcError) as exc:
            wire = self.wire_error(exc)
            return error(call.id, wire.code, wire.message, wire.data)
        except Exception:
            log.exception("internal error in %s", call.method)
            return error(call.id, ErrorCode.INTERNAL_ERROR, f"internal error in {call.method}")
        return Response(id=call.id, result=result)
