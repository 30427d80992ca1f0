"""Control requests between nodes on a real redis-server: answers, errors, timeouts, forged requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.control import ControlChannel, ControlError
from ccxd.fleet.entry import seal_bytes

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def serving(url: str, key: bytes, node: str, seen: list[tuple[str, bytes]]) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(url)

    async def handler(method: str, params: bytes) -> bytes:
        seen.append((method, params))
        if method == "cancel":
            return b"cancelled " + params
        raise ControlError(f"job {params.decode()} is not running here")

    started = asyncio.Event()
    task = asyncio.create_task(ControlChannel(client, key).serve(node, handler, started))
    await started.wait()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def test_request_reply_error_and_timeout(redis_server, r: aioredis.Redis, fleet_key: bytes) -> None:
    seen: list[tuple[str, bytes]] = []
    asker = ControlChannel(r, fleet_key, sender="A")
    async with serving(redis_server.url, fleet_key, "B", seen):
        assert await asker.request("B", "cancel", b"j1") == b"cancelled j1"
        with pytest.raises(ControlError, match="job j2 is not running here"):
            await asker.request("B", "pause", b"j2")
        with pytest.raises(TimeoutError, match="^node C did not answer within 0.3 s$"):
            await asker.request("C", "cancel", b"j3", timeout=0.3)
    assert seen == [("cancel", b"j1"), ("pause", b"j2")]
    assert await r.keys(keys.reply("*")) == []  # every answer was taken


async def test_a_request_without_the_fleet_key_is_not_acted_on(
    redis_server, r: aioredis.Redis, fleet_key: bytes, caplog
) -> None:
    seen: list[tuple[str, bytes]] = []
    caplog.set_level(logging.WARNING, "ccxd.fleet")
    async with serving(redis_server.url, fleet_key, "B", seen):
        intruder = ControlChannel(r, os.urandom(32))
        with pytest.raises(TimeoutError):
            await intruder.request("B", "cancel", b"j1", timeout=0.5)
        await r.xadd(keys.control("B"), {"r": seal_bytes(os.urandom(32), "fleet:ctl:B", b"junk")})
        await r.xadd(keys.control("B"), {"x": b"no request"})
        # Still serving the key's holders, after the forged ones.
        assert await ControlChannel(r, fleet_key).request("B", "cancel", b"j9") == b"cancelled j9"
    assert seen == [("cancel", b"j9")]
    assert caplog.text.count("control request for B dropped") == 3


async def test_a_request_for_one_node_cannot_be_replayed_to_another(
    redis_server, r: aioredis.Redis, fleet_key: bytes
) -> None:
    seen: list[tuple[str, bytes]] = []
    async with serving(redis_server.url, fleet_key, "C", seen):
        asker = ControlChannel(r, fleet_key)
        with pytest.raises(TimeoutError):
            await asker.request("B", "cancel", b"j1", timeout=0.2)
        sealed_for_b = (await r.xrange(keys.control("B")))[0][1]
        await r.xadd(keys.control("C"), sealed_for_b)
        assert await asker.request("C", "cancel", b"j2") == b"cancelled j2"
    assert seen == [("cancel", b"j2")]
