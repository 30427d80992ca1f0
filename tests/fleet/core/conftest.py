"""A real redis-server per test for the fleet primitives, and clients on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.store.conftest import RedisProcess


@pytest.fixture
def redis_server(tmp_root: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(tmp_root, persistent=False).start()
    yield r
    r.stop()


@pytest.fixture
async def r(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """A client as the daemon passes one in (bytes replies)."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def fleet_key() -> bytes:
    return os.urandom(32)
