"""Remote verbs between nodes: a sealed request on the node's stream, its answer on a short-lived list.

``cancel``, ``signal``, ``pause``, ``resume`` and ``job.stats`` of a job that runs
on another node go as a request on ``fleet:ctl:<node>``, sealed with the fleet
key for that node (whoever else writes to the Redis cannot make a node act);
the node answers on ``fleet:reply:<rid>`` (sealed for that request, expires after
30 s).  A request older than the reply's lifetime when its node reads it (the
node was down) is not acted on.

Both ends block on Redis (``BLPOP``, ``XREAD BLOCK`` of 5 s): give them a client
whose pool may open a connection of their own, not the store's single shared one,
and whose socket timeout is longer than those waits (or none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.entry import BadSeal, open_sealed, seal_bytes
from ccxd.fleet.scripts import text

__all__ = ["REPLY_TTL", "ControlChannel", "ControlError", "Handler"]

log = logging.getLogger("ccxd.fleet")

REPLY_TTL: Final = 30
"""Seconds an answer waits for its asker; a request older than this is not acted on."""
_STREAM_MAX: Final = 1000
_READ_BLOCK_MS: Final = 5000

Handler = Callable[[str, bytes], Awaitable[bytes]]
"""``handler(method, params) -> result``: raise :class:`ControlError` (or anything) to answer an error."""


class ControlError(Exception):
    """The node answered with an error (its message, as it said it)."""


class _Request(msgspec.Struct, array_like=True):
    rid: str
    method: str
    params: bytes
    sender: str


class _Reply(msgspec.Struct, array_like=True):
    ok: bool
    result: bytes = b""
    error: str = ""


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(_Request)
_reply_decoder = msgspec.msgpack.Decoder(_Reply)


def _ctl_context(node: str) -> str:
    return f"fleet:ctl:{node}"


def _reply_context(rid: str) -> str:
    return f"fleet:reply:{rid}"


class ControlChannel:
    """Ask other nodes to act on their jobs, and answer their requests; ``key`` is the fleet secret."""

    def __init__(self, redis: aioredis.Redis, key: bytes, *, sender: str = "") -> None:
        self.redis = redis
        self.key = key
        self.sender = sender

    async def request(self, node: str, method: str, params: bytes, timeout: float = 5.0) -> bytes:
        """``node``'s answer to ``method`` with ``params``.

        :class:`TimeoutError` ("node B did not answer within 5 s") when it does
        not answer in time; :class:`ControlError` when it answers an error.
        """
        rid = uuid.uuid4().hex
        body = _encoder.encode(_Request(rid, method, params, self.sender))
        sealed = seal_bytes(self.key, _ctl_context(node), body)
        await self.redis.xadd(keys.control(node), {"r": sealed}, maxlen=_STREAM_MAX, approximate=True)
        got: Any = await self.redis.blpop([keys.reply(rid)], timeout=timeout)
        if got is None:
            raise TimeoutError(f"node {node} did not answer within {timeout:g} s")
        try:
            reply = _reply_decoder.decode(open_sealed(self.key, _reply_context(rid), got[1]))
        except (BadSeal, msgspec.DecodeError) as exc:
            raise ControlError(f"node {node}'s answer is not valid: {exc}") from None
        if not reply.ok:
            raise ControlError(reply.error)
        return reply.result

    async def serve(self, node: str, handler: Handler, started: asyncio.Event | None = None) -> None:
        """Answer requests for ``node`` with ``handler`` until cancelled (each in its own task).

        Requests sent before this started are not answered (their askers gave up);
        every one after is (``started`` is set once that point is fixed).  A request
        without the fleet key's seal is dropped and logged.
        """
        stream = keys.control(node)
        newest: Any = await self.redis.xrevrange(stream, count=1)
        last = text(newest[0][0]) if newest else "0-0"
        if started is not None:
            started.set()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                got: Any = await self.redis.xread({stream: last}, count=32, block=_READ_BLOCK_MS)
                if not got:
                    continue
                now: Any = await self.redis.time()
                now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
                for entry_id, fields in got[0][1]:
                    last = text(entry_id)
                    age_ms = now_ms - int(last.split("-")[0])
                    request = self._open(node, fields)
                    if request is None:
                        continue
                    if age_ms > REPLY_TTL * 1000:
                        log.info(
                            "control %s from %s is %.0f s old: not acted on",
                            request.method,
                            request.sender or "?",
                            age_ms / 1000,
                        )
                        continue
                    task = asyncio.create_task(
                        self._answer(request, handler), name=f"fleet-ctl-{request.rid}"
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            for task in list(tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _open(self, node: str, fields: Any) -> _Request | None:
        raw = (fields or {}).get(b"r") or (fields or {}).get("r")
        try:
            if raw is None:
                raise BadSeal("no request in the entry")
            return _request_decoder.decode(open_sealed(self.key, _ctl_context(node), raw))
        except (BadSeal, msgspec.DecodeError) as exc:
            log.warning("control request for %s dropped: %s", node, exc)
            return None

    async def _answer(self, request: _Request, handler: Handler) -> None:
        try:
            reply = _Reply(True, await handler(request.method, request.params))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the asker gets the error in words, whatever it was
            reply = _Reply(False, error=str(exc) or type(exc).__name__)
        sealed = seal_bytes(self.key, _reply_context(request.rid), _encoder.encode(reply))
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(keys.reply(request.rid), sealed)
        pipe.expire(keys.reply(request.rid), REPLY_TTL)
        try:
            await pipe.execute()
        except Exception as exc:  # Redis went away: the asker times out, as it would anyway
            log.warning("control %s: could not answer (%s)", request.method, exc)
