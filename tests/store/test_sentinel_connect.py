"""open_redis through Sentinel: the URL's database and credentials are used, and closing leaves nothing open."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError

from ccxd.store.connect import open_redis
from tests.redis_topology import TLS, RedisTopology, redis_topology
from tests.security.test_redis_authority import make_pki

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


async def test_rediss_sentinel_talks_tls_to_the_sentinels_and_the_primary_and_follows_a_failover(tmp_root):
    pki = make_pki(tmp_root)
    topo = RedisTopology(tmp_root / "topology", tls=TLS(pki["ca"], pki["server"], pki["server-key"])).start()
    client = open_redis(topo.url(scheme="rediss+sentinel"), tls_ca_file=str(pki["ca"]))
    try:
        await client.set("over", "tls")
        new = await asyncio.to_thread(topo.failover)
        deadline = time.monotonic() + 20
        while True:  # the first command after the kill meets the dead connection
            try:
                assert await client.get("over") == b"tls"  # replicated before the kill
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        conn = await client.connection_pool.get_connection()
        assert (conn.host, conn.port) == new and isinstance(conn, SSLConnection)  # type: ignore[attr-defined]
        await client.connection_pool.release(conn)
        # Another CA's word is not taken, from the sentinels or the primary.
        other = open_redis(topo.url(scheme="rediss+sentinel"), tls_ca_file=str(pki["other-ca"]), timeout=1)
        with pytest.raises(redis.ConnectionError, match="No master found"):
            await other.ping()
        await other.aclose()
    finally:
        await client.aclose()
        topo.stop()
