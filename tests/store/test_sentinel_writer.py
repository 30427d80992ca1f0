"""The store through Redis Sentinel: a failover loses nothing the primary acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
import redis

from ccxd.store import keys
from ccxd.store.base import StoreUnavailable
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.redis_store import RedisStore
from ccxd.store.writer import StoreWriter
from tests.redis_topology import RedisTopology, redis_topology

from .test_redis_store import job

pytestmark = pytest.mark.redis
__all__ = ["redis_topology"]


async def test_writes_the_primary_acknowledged_but_never_replicated_survive_a_failover(
    redis_topology: RedisTopology, tmp_root
):
    topo = redis_topology
    store = RedisStore(topo.url(), "n1", timeout=0.5)
    await store.open()
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=64 << 20)
    writer.start()
    try:
        writer.submit(SaveJob(job("replicated")))
        assert await writer.flush(5)

        # Cut the replica off (it cannot log in again), so what comes next exists on the primary only.
        old = topo.current_primary()
        admin = old.admin()
        admin.config_set("requirepass", "changed")
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
        writer.submit(SaveJob(job("unreplicated")))
        writer.submit(AppendOutput("unreplicated", 0, 0, 0, b"its output\n"))
        assert await writer.flush(5)
        assert topo.replica.admin().exists(keys.job("n1", "unreplicated")) == 0

        # The primary dies while the writer is idle; the sentinels promote the replica, which lacks it.
        old.kill()
        new = topo.wait_promoted(old.address)
        assert new == topo.replica.address
        assert topo.client().exists(keys.job("n1", "unreplicated")) == 0

        # A history read meets the dead connection first (it fails, or redis-py reconnects it
        # quietly), so the writer's next batch reaches the new primary without an error of its own.
        with contextlib.suppress(StoreUnavailable):
            await store.get_job("replicated")
        writer.submit(SaveJob(job("after")))
        deadline = time.monotonic() + 20
        while writer.degraded or writer.pending or not await store.get_job("after"):
            assert time.monotonic() < deadline, writer.describe()
            await asyncio.sleep(0.05)  # the writer announces no "written" event
        stored = {j for j in ("replicated", "unreplicated", "after") if await store.get_job(j)}
        assert stored == {"replicated", "unreplicated", "after"}
        chunks = await store.read_output("unreplicated", 0, 1 << 20)
        assert b"".join(c.data for c in chunks) == b"its output\n"
        assert writer.dropped == 0
        assert f"primary {new[0]}:{new[1]}" in store.name and "sentinel ccxd via" in store.name
        assert writer.describe() == store.name
    finally:
        await writer.close()
        await store.close()


async def test_a_primary_that_refuses_writes_without_its_replica_makes_the_writer_journal_until_it_is_back(
    redis_topology: RedisTopology, tmp_root
):
    # min-replicas-to-write (decision 23-sentinel-failover) bounds what a failover can lose.
    topo = redis_topology
    topo.primary.admin().config_set("min-replicas-to-write", 1)
    deadline = time.monotonic() + 10
    while _refusal(topo) is not None:  # the primary counts its good replicas once a second
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    store = RedisStore(topo.url(), "n1", timeout=0.5)
    await store.open()
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=64 << 20)
    writer.start()
    try:
        topo.replica.stop()
        deadline = time.monotonic() + 20
        while "NOREPLICAS" not in str(_refusal(topo)):  # the primary notices its replica is gone
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        writer.submit(SaveJob(job("while alone")))
        await writer.wait_degraded(True, 10)
        assert writer.dropped == 0 and writer.refused == 0  # an outage, not a refusal

        topo.replica.start()
        await writer.wait_degraded(False, 30)
        assert await store.get_job("while alone") is not None
        deadline = time.monotonic() + 10
        while not topo.replica.admin().exists(keys.job("n1", "while alone")):  # replicated behind the answer
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await writer.close()
        await store.close()


def _refusal(topo: RedisTopology) -> redis.RedisError | None:
    try:
        topo.client().set("probe", "1")
    except redis.RedisError as exc:
        return exc
    return None
