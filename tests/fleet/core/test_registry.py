"""Heartbeats, leases and the reaper on a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.queue import Claimed
from ccxd.fleet.registry import NodeLost, NodeRegistry, UnknownNode
from ccxd.protocol import JobInfo, JobReason, JobState
from ccxd.protocol.nodes import NodeInfo
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.redis_store import RedisStore
from tests.fleet.core.fleetutil import entry, join, queue, until

pytestmark = pytest.mark.redis

LEASE_MS = 300


async def test_heartbeats_list_nodes_and_states(r: aioredis.Redis) -> None:
    reg = NodeRegistry(r, 10_000)
    inc = await join(reg, "A", {"zone": "a"})
    info = NodeInfo(name="A", labels={"zone": "a"}, slots=4, used=1, load=0.5, version="9", incarnation=inc)
    assert await reg.heartbeat(info) == "ok"
    await join(reg, "B")
    nodes = await reg.nodes()
    assert [n.name for n in nodes] == ["A", "B"]
    a = nodes[0]
    assert (a.labels, a.slots, a.used, a.load, a.version, a.state, a.incarnation) == (
        {"zone": "a"},
        4,
        1,
        0.5,
        "9",
        "up",
        inc,
    )
    assert abs(a.heartbeat - time.time()) < 5
    assert (await reg.set_state("B", "draining")).state == "draining"
    assert (await reg.set_state("B", "cordoned")).state == "cordoned"
    # A restart keeps a cordon: the node comes back with a new incarnation, still cordoned.
    inc_b2 = await reg.new_incarnation("B")
    assert await reg.heartbeat(NodeInfo(name="B", incarnation=inc_b2)) == "joined"
    b = await reg.node("B")
    assert b is not None and (b.state, b.incarnation) == ("cordoned", inc_b2)
    assert (await reg.set_state("B", "up")).state == "up"
    with pytest.raises(UnknownNode):
        await reg.set_state("Z", "cordoned")
    with pytest.raises(ValueError, match="cannot be set 'lost'"):
        await reg.set_state("A", "lost")


async def _stale(reg: NodeRegistry, name: str, beat: NodeInfo | None = None) -> None:
    """Wait until ``name``'s lease ran out (keeping ``beat``'s node alive meanwhile)."""

    async def check() -> bool:
        if beat is not None:
            await reg.heartbeat(beat)
        return name in await reg.scripts.stale(reg.lease_ms)

    await until(check)


async def test_reaping_fences_finishes_and_reruns_only_what_allows_it(
    redis_server, r: aioredis.Redis, fleet_key: bytes
) -> None:
    reg = NodeRegistry(r, LEASE_MS)
    q = queue(r, fleet_key)
    inc_b = await join(reg, "B")
    plain, rerun, done = entry(), entry(retry_on_node_loss=True), entry()
    never_recorded = entry(kind="claude", prompt="hi")
    stub = JobInfo(id=never_recorded.job_id, state=JobState.QUEUED, command="claude", queued_at=time.time())
    for e in (plain, rerun, done):
        await q.submit(e)
    await q.submit(never_recorded, stub)
    claims: dict[str, Claimed] = {}
    for _ in range(4):
        got = await q.next("B", inc_b, {}, ["B"], 100)
        assert got is not None
        claims[got.job_id] = got

    store = RedisStore(redis_server.url, "B", timeout=2.0)
    await store.open()
    try:
        now = time.time()
        for e in (plain, rerun, done):
            state = JobState.FINISHED if e is done else JobState.RUNNING
            info = JobInfo(
                id=e.job_id,
                state=state,
                command="echo hi",
                queued_at=now,
                started_at=now,
                node="B",
                argv=[],
                reason=JobReason.EXITED if e is done else None,
                exit_code=0 if e is done else None,
            )
            epoch = claims[e.job_id].epoch
            await store.apply(
                [SaveJob(info, fleet_epoch=epoch), AppendOutput(e.job_id, 0, 0, 0, b"so far\n", epoch)]
            )

        # Not before this node has been connected for a lease itself.
        inc_a = await join(reg, "A")
        beat_a = NodeInfo(name="A", incarnation=inc_a)
        await _stale(reg, "B", beat_a)
        assert await reg.reap(may_reap=False) == []
        assert (await reg.node("B")).state == "lost"  # type: ignore[union-attr]  # shown lost, not yet reaped

        outcomes = {x.job_id: x.outcome for x in await reg.reap(may_reap=True)}
        assert outcomes == {
            plain.job_id: "lost",
            rerun.job_id: "rerun",
            done.job_id: "done",
            never_recorded.job_id: "rerun",
        }
        assert await reg.reap(may_reap=True) == []  # once
        assert await r.ttl(keys.job(plain.job_id)) > 0  # settled: goes after a week
        assert await r.ttl(keys.job(rerun.job_id)) == -1  # kept until its re-run is claimed
        assert await q.running("B") == set()

        for e in (plain, rerun):
            got = await store.get_job(e.job_id)
            assert got is not None
            assert (got.state, got.reason, got.node) == (JobState.FINISHED, JobReason.LOST, "B")
            assert got.finished_at is not None and abs(got.finished_at - time.time()) < 5
            assert got.queued_at == now and got.started_at == now  # the rest of the record as it was
            assert got.duration is not None and got.duration >= 0
            assert "node B was lost" in (got.error or "")
            assert [c.data for c in await store.read_output(e.job_id, 0, 1000)] == [b"so far\n"]
            assert got.output_bytes == 7  # what reached Redis, though the last record said 0
            info = await q.queued_info(e.job_id)
            assert info is not None and (info.state, info.epoch) == ("lost", claims[e.job_id].epoch + 1)
        finished = await store.get_job(done.job_id)
        assert finished is not None and finished.reason is JobReason.EXITED
        assert (await q.queued_info(done.job_id)).state == "done"  # type: ignore[union-attr]
        unrecorded = await store.get_job(never_recorded.job_id)
        assert (
            unrecorded is not None and unrecorded.reason is JobReason.LOST and unrecorded.command == "claude"
        )
        assert not await store.unfinished_jobs()

        # The lost run's late writes are fenced.
        late = JobInfo(id=plain.job_id, state=JobState.FINISHED, command="echo hi", node="B", exit_code=0)
        await store.apply(
            [
                SaveJob(late, fleet_epoch=claims[plain.job_id].epoch),
                AppendOutput(plain.job_id, 1, 0, 7, b"late\n", claims[plain.job_id].epoch),
            ]
        )
        again = await store.get_job(plain.job_id)
        assert again is not None and again.reason is JobReason.LOST
        assert await store.output_end(plain.job_id) == 7

        # The returning incarnation is told it is lost; a new one joins.
        assert await reg.heartbeat(NodeInfo(name="B", incarnation=inc_b)) == "lost"
        with pytest.raises(NodeLost):
            await reg.set_state("B", "up")

        # Exactly the re-runnable jobs run again, under new ids that point back.
        reruns = []
        while (got := await q.next("A", inc_a, {}, ["A"], 100)) is not None:
            reruns.append(got)
        assert sorted(c.entry.retry_of or "" for c in reruns) == sorted([rerun.job_id, never_recorded.job_id])
        for c in reruns:
            assert c.job_id not in (rerun.job_id, never_recorded.job_id)
            assert (c.epoch, c.entry.attempt, c.entry.job_id) == (1, 2, c.job_id)
            old = await q.queued_info(c.entry.retry_of or "")
            assert old is not None and old.retried_by == c.job_id
            assert await r.ttl(keys.job(c.entry.retry_of or "")) > 0
            assert (await q.spec(c.job_id)) == c.entry  # sealed for its new id
        record = await store.get_job(rerun.job_id)
        assert record is not None and record.retried_by in {c.job_id for c in reruns}
        assert await q.running("A") == {c.job_id for c in reruns}

        inc_b2 = await reg.new_incarnation("B")
        assert inc_b2 > inc_b
        assert await reg.heartbeat(NodeInfo(name="B", incarnation=inc_b2)) == "joined"
        assert (await reg.node("B")).state == "up"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_node_that_heartbeats_is_never_reaped(r: aioredis.Redis, fleet_key: bytes) -> None:
    reg = NodeRegistry(r, LEASE_MS)
    inc_a, inc_b = await join(reg, "A"), await join(reg, "B")
    q = queue(r, fleet_key)
    e = entry(retry_on_node_loss=True)
    await q.submit(e)
    assert await q.next("A", inc_a, {}, ["A"], 100) is not None
    beat_a = NodeInfo(name="A", incarnation=inc_a)
    await _stale(reg, "B", beat_a)  # B went silent; A kept beating
    reaped = await reg.reap(may_reap=True)
    assert reaped == []  # B ran nothing; A is alive
    assert await r.hget(keys.STATES, "A") == f"{inc_a} up".encode()
    assert await r.hget(keys.STATES, "B") == f"{inc_b} lost".encode()
    assert await q.running("A") == {e.job_id}


async def test_each_lost_job_runs_again_once_with_two_nodes_racing(redis_server, fleet_key: bytes) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    try:
        reg = NodeRegistry(clients[0], LEASE_MS)
        q = queue(clients[0], fleet_key)
        inc_b = await join(reg, "B")
        lost = [entry(retry_on_node_loss=True) for _ in range(40)]
        for e in lost:
            await q.submit(e)
        for _ in lost:
            assert await q.next("B", inc_b, {}, ["B"], 100) is not None
        incs = {"A": await join(reg, "A"), "C": await join(reg, "C")}

        async def beat_others() -> bool:
            for name, inc in incs.items():
                await reg.heartbeat(NodeInfo(name=name, incarnation=inc))
            return "B" in await reg.scripts.stale(LEASE_MS)

        await until(beat_others)
        assert len(await reg.reap(may_reap=True)) == 40
        reruns: dict[str, list[str]] = {"A": [], "C": []}

        async def consume(name: str, client: aioredis.Redis) -> None:
            taker = queue(client, fleet_key)
            while len(reruns["A"]) + len(reruns["C"]) < 40:
                await taker.take_stale(name, 0)
                got = await taker.next(name, incs[name], {}, ["A", "C"], 20)
                if got is not None:
                    reruns[name].append(got.entry.retry_of or "")

        await asyncio.wait_for(asyncio.gather(consume("A", clients[1]), consume("C", clients[2])), 60)
        assert sorted(reruns["A"] + reruns["C"]) == sorted(e.job_id for e in lost)
        for name in ("A", "C"):  # nothing more comes
            assert await queue(clients[0], fleet_key).next(name, incs[name], {}, ["A", "C"], 20) is None
    finally:
        for c in clients:
            await c.aclose()
