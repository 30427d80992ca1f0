"""The one dispatcher every transport shares: bytes in, reply bytes out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from msgspec import Struct

from ccxd.errors import RpcError
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

__all__ = ["Dispatcher", "Handler"]

log = logging.getLogger("ccxd.rpc")

Handler = Callable[[Any, Connection], Awaitable[Struct]]


class Dispatcher:
    """Routes JSON-RPC calls to handlers and builds spec-conforming replies."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, method: str, handler: Handler) -> None:
        """Serve ``method`` (which must be defined in the protocol) with ``handler``."""
        if method not in METHODS:
            raise KeyError(f"{method} is not a protocol method")
        self._handlers[method] = handler

    @property
    def methods(self) -> list[str]:
        """Methods this dispatcher serves."""
        return sorted(self._handlers)

    async def handle(
        self,
        raw: bytes,
        conn: Connection,
        route: Callable[[Call, Connection], Awaitable[Response | ErrorResponse]] | None = None,
    ) -> bytes | None:
        """Handle one wire message; return the encoded reply, or None when none is due.

        ``route`` answers each call instead of :meth:`call` (a front-end with
        methods of its own, such as the cc_executor adapter, passes one).
        """
        parsed = parse(raw)
        replies: list[Response | ErrorResponse] = []
        answer = route or self.call
        for item in parsed.calls:
            if isinstance(item, ErrorResponse):
                replies.append(item)
                continue
            reply = await answer(item, conn)
            if not item.is_notification:
                replies.append(reply)
        if not replies:
            return None
        return encode(replies if parsed.batch else replies[0])  # type: ignore[arg-type]

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
        except RpcError as exc:
            return error(call.id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("internal error in %s", call.method)
            return error(call.id, ErrorCode.INTERNAL_ERROR, f"internal error in {call.method}")
        return Response(id=call.id, result=result)
