"""open_redis through Sentinel: the URL's database and credentials are used, and closing leaves nothing open."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import AuthenticationError

from ccxd.store.connect import open_redis
from tests.redis_topology import RedisTopology, redis_topology

pytestmark = pytest.mark.redis
__all__ = ["redis_topology"]


def sentinel_clients(topo: RedisTopology) -> list[int]:
    return [int(s.admin().info("clients")["connected_clients"]) for s in topo.sentinels]


async def test_a_sentinel_client_writes_to_the_urls_database_and_closes_its_sentinel_connections(
    redis_topology: RedisTopology,
):
    topo = redis_topology
    before = sentinel_clients(topo)
    client = open_redis(topo.url(db=3), decode_responses=True, max_connections=2)
    await client.set("where", "db 3")
    assert await client.get("where") == "db 3"  # decoded, as asked
    primary = topo.current_primary().admin()
    assert primary.execute_command("SELECT", 3) and primary.get("where") == b"db 3"
    assert sum(sentinel_clients(topo)) > sum(before)  # the client asked a sentinel for the primary

    await client.aclose()
    deadline = time.monotonic() + 10
    while sentinel_clients(topo) != before:  # a sentinel sees a closed connection a moment later
        assert time.monotonic() < deadline, (before, sentinel_clients(topo))
        await asyncio.sleep(0.05)


async def test_a_wrong_primary_password_is_refused_by_the_primary_not_the_sentinels(
    redis_topology: RedisTopology,
):
    client = open_redis(redis_topology.url(password="wrong"))
    try:
        with pytest.raises(AuthenticationError, match="invalid username-password pair"):
            await client.ping()
    finally:
        await client.aclose()
