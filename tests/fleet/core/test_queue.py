"""The fleet queue on a real redis-server: exactly-once claims, priority, pins, parking, dead readers."""

from __future__ import annotations

import asyncio
import logging
import os

import msgspec
import pytest
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.entry import job_context, pack_entry, seal_bytes
from ccxd.fleet.queue import Claimed, DuplicateJob, FleetQueue
from ccxd.fleet.registry import NodeRegistry
from tests.fleet.core.fleetutil import entry, join, queue, until

pytestmark = pytest.mark.redis


async def test_300_jobs_two_nodes_each_claimed_exactly_once(redis_server, fleet_key: bytes) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    try:
        reg = NodeRegistry(clients[0], 10_000)
        incs = {name: await join(reg, name) for name in ("A", "B")}
        submitted = []
        for _ in range(300):
            e = entry()
            await queue(clients[0], fleet_key).submit(e)
            submitted.append(e.job_id)
        claimed: dict[str, list[str]] = {"A": [], "B": []}

        async def consume(name: str, client: aioredis.Redis) -> None:
            q = queue(client, fleet_key)
            while len(claimed["A"]) + len(claimed["B"]) < 300:
                # Steal the other's read entries at once: the claim script alone must keep it exactly-once.
                await q.take_stale(name, 0)
                got = await q.next(name, incs[name], {}, ["A", "B"], 20)
                if got is not None:
                    claimed[name].append(got.job_id)

        await asyncio.wait_for(asyncio.gather(consume("A", clients[1]), consume("B", clients[2])), 60)
        every = claimed["A"] + claimed["B"]
        assert sorted(every) == sorted(submitted)  # none lost, none twice
        assert claimed["A"] and claimed["B"]
        assert len(await queue(clients[0], fleet_key).running("A")) == len(claimed["A"])
    finally:
        for c in clients:
            await c.aclose()


async def test_pinned_then_high_normal_low(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    low, normal, high, pinned = entry(priority="low"), entry(priority=0), entry(priority=9), entry(node="A")
    for e in (low, normal, high, pinned):
        await q.submit(e)
    order = []
    for _ in range(4):
        got = await q.next("A", inc, {}, ["A"], 100)
        assert got is not None
        order.append(got.job_id)
    assert order == [pinned.job_id, high.job_id, normal.job_id, low.job_id]
    assert await q.next("A", inc, {}, ["A"], 50) is None


async def test_a_job_pinned_to_another_node_waits_for_it(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc_a, inc_b = await join(reg, "A"), await join(reg, "B")
    q = queue(r, fleet_key)
    e = entry(node="B")
    await q.submit(e)
    assert await q.next("A", inc_a, {}, ["A", "B"], 50) is None
    got = await q.next("B", inc_b, {}, ["A", "B"], 100)
    assert got is not None and got.job_id == e.job_id and got.epoch == 1


async def test_no_matching_node_parks_the_job_until_one_joins(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc_a = await join(reg, "A", {"zone": "a"})
    q = queue(r, fleet_key)
    e = entry(where={"zone": "b"})
    await q.submit(e)
    assert await q.next("A", inc_a, {"zone": "a"}, ["A"], 100) is None
    assert await r.zscore(keys.PARKED, e.job_id) is not None
    info = await q.queued_info(e.job_id)
    assert info is not None and info.state == "queued" and info.node == ""

    inc_b = await join(reg, "B", {"zone": "b"})
    assert await q.requeue_parked() == 1
    assert await r.zcard(keys.PARKED) == 0
    # A passes it again (B has not): back on the queue, not parked.
    assert await q.next("A", inc_a, {"zone": "a"}, ["A", "B"], 50) is None
    assert await r.zcard(keys.PARKED) == 0
    got = await q.next("B", inc_b, {"zone": "b"}, ["A", "B"], 100)
    assert got is not None and got.job_id == e.job_id
    info = await q.queued_info(e.job_id)
    assert info is not None and (info.state, info.node, info.epoch) == ("claimed", "B", 1)


async def test_entries_a_dead_reader_left_are_taken_over(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    e = entry()
    await q.submit(e)
    stream = keys.queue("normal")
    # Node D read it and died before claiming or passing it.
    got = await r.xreadgroup(keys.GROUP, "D", {stream: ">"}, count=1)
    assert got and got[0][1]
    assert await q.next("A", inc, {}, ["A"], 50) is None  # still D's
    assert await q.take_stale("A", 60_000) == 0  # not idle for a lease yet
    taken: list[int] = []

    async def idle_long_enough() -> bool:
        taken.append(await q.take_stale("A", 100))
        return taken[-1] == 1

    await until(idle_long_enough)
    claimed = await q.next("A", inc, {}, ["A"], 100)
    assert claimed is not None and claimed.job_id == e.job_id
    assert (await r.xpending(stream, keys.GROUP))["pending"] == 0


async def test_a_forged_entry_is_dropped_and_logged(r: aioredis.Redis, fleet_key: bytes, caplog) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    forged = FleetQueue(r, os.urandom(32), mint_id=lambda: "x")
    e = entry()
    await forged.submit(e)
    caplog.set_level(logging.WARNING, "ccxd.fleet")
    assert await q.next("A", inc, {}, ["A"], 100) is None
    assert "MAC is not the fleet key's" in caplog.text
    stream = keys.queue("normal")
    assert await r.xlen(stream) == 0
    assert (await r.xpending(stream, keys.GROUP))["pending"] == 0
    assert await q.running("A") == set()


async def test_a_tampered_spec_is_not_run(r: aioredis.Redis, fleet_key: bytes, caplog) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    e = entry()
    await q.submit(e)
    spec = await r.hget(keys.job(e.job_id), "spec")
    await r.hset(keys.job(e.job_id), "spec", spec.replace(b"echo hi", b"echo HI"))
    caplog.set_level(logging.WARNING, "ccxd.fleet")
    assert await q.next("A", inc, {}, ["A"], 100) is None
    assert "not running" in caplog.text
    assert await q.running("A") == set()


async def test_cancel_queued_and_finish(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    cancelled, run = entry(), entry()
    await q.submit(cancelled)
    await q.submit(run)
    with pytest.raises(DuplicateJob):
        await q.submit(run)
    assert await q.cancel_queued(cancelled.job_id)
    assert not await q.cancel_queued(cancelled.job_id)
    got = await q.next("A", inc, {}, ["A"], 100)
    assert isinstance(got, Claimed) and got.job_id == run.job_id  # the cancelled one is skipped
    assert got.entry == run
    assert not await q.cancel_queued(run.job_id)  # claimed: the running node cancels it
    assert await q.running("A") == {run.job_id}
    assert await r.ttl(keys.job(run.job_id)) == -1  # a running job's hash (its fence) never expires
    assert not await q.finish(run.job_id, "A", got.epoch + 1)
    assert not await q.finish(run.job_id, "B", got.epoch)
    assert await q.finish(run.job_id, "A", got.epoch)
    assert await q.running("A") == set()
    for settled in (run, cancelled):  # settled hashes go after a week
        assert 6 * 86400 < await r.ttl(keys.job(settled.job_id)) <= 7 * 86400
    info = await q.queued_info(cancelled.job_id)
    assert info is not None and info.state == "cancelled"
    assert await q.queued_info("nope") is None


async def test_a_node_no_longer_up_hands_the_entry_on(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc_a, inc_b = await join(reg, "A"), await join(reg, "B")
    q = queue(r, fleet_key)
    e = entry()
    await q.submit(e)
    await reg.set_state("A", "cordoned")
    assert await q.next("A", inc_a, {}, ["B"], 50) is None  # A still thought it was up
    assert await q.running("A") == set()
    got = await q.next("B", inc_b, {}, ["B"], 100)
    assert got is not None and got.job_id == e.job_id


async def test_submit_to_a_pinned_node_sealed_for_its_id(r: aioredis.Redis, fleet_key: bytes) -> None:
    q = queue(r, fleet_key)
    e = entry(node="B")
    await q.submit(e)
    assert await r.xlen(keys.pinned("B")) == 1
    assert await r.hget(keys.job(e.job_id), "spec") == pack_entry(fleet_key, e)
    assert await q.spec(e.job_id) == e


async def test_a_job_only_a_busy_node_matches_is_not_handed_round(
    r: aioredis.Redis, fleet_key: bytes
) -> None:
    reg = NodeRegistry(r, 10_000)
    inc_a, inc_b = await join(reg, "A", {"zone": "a"}), await join(reg, "B", {"zone": "b"})
    q = queue(r, fleet_key)
    e = entry(where={"zone": "b"})
    await q.submit(e)
    # B has no free slot, so it does not read: A passes the job, gets it back once, then waits.
    waiting = asyncio.create_task(q.next("A", inc_a, {"zone": "a"}, ["A", "B"], 500))

    async def handed_twice() -> bool:
        return (await r.xinfo_stream(keys.queue("normal")))["entries-added"] >= 3

    await until(handed_twice)
    pinned = entry(node="A")
    await q.submit(pinned)  # a job pinned to A still reaches it meanwhile
    got = await waiting
    assert got is not None and got.job_id == pinned.job_id
    assert (await r.xinfo_stream(keys.queue("normal")))["entries-added"] == 3  # submitted, passed twice
    assert await r.zcard(keys.PARKED) == 0
    claimed = await q.next("B", inc_b, {"zone": "b"}, ["A", "B"], 100)
    assert claimed is not None and claimed.job_id == e.job_id


async def test_a_newer_versions_entry_is_kept_for_a_node_that_reads_it(
    r: aioredis.Redis, fleet_key: bytes, caplog
) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    e = entry()
    await q.submit(e)
    newer = msgspec.msgpack.encode(
        {"job_id": e.job_id, "submitter": "C", "params": {"command": "echo hi", "option_of_tomorrow": 1}}
    )
    await r.hset(keys.job(e.job_id), "spec", seal_bytes(fleet_key, job_context(e.job_id), newer))
    caplog.set_level(logging.WARNING, "ccxd.fleet")
    assert await q.next("A", inc, {}, ["A"], 100) is None
    assert "sealed but unreadable here" in caplog.text
    info = await q.queued_info(e.job_id)
    assert info is not None and info.state == "queued"  # not dropped: parked until a node that reads it joins
    assert await r.zscore(keys.PARKED, e.job_id) is not None


async def test_a_redis_that_lost_the_queues_is_read_again(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A")
    q = queue(r, fleet_key)
    assert await q.next("A", inc, {}, ["A"], 10) is None  # the groups exist now
    await r.delete(*q.streams("A"))  # as after a restart without the data
    assert await q.take_stale("A", 0) == 0
    assert await q.next("A", inc, {}, ["A"], 10) is None
    e = entry()
    await q.submit(e)
    got = await q.next("A", inc, {}, ["A"], 100)
    assert got is not None and got.job_id == e.job_id
