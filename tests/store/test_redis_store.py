"""The Redis store against a real redis-server."""

from __future__ import annotations

import asyncio
import time

from ccxd.protocol import HistoryParams, JobInfo, JobReason, JobState
from ccxd.store.ops import AppendOutput, RecordDuration, SaveJob
from ccxd.store.redis_store import RedisStore


def job(
    job_id: str,
    *,
    command: str = "echo hi",
    session: str | None = None,
    state: JobState = JobState.FINISHED,
    reason: JobReason | None = JobReason.EXITED,
    queued_at: float | None = None,
    node: str = "n1",
) -> JobInfo:
    return JobInfo(
        id=job_id,
        state=state,
        command=command,
        session=session,
        reason=reason,
        queued_at=queued_at if queued_at is not None else time.time(),
        node=node,
    )


async def open_store(redis_server, node: str = "n1") -> RedisStore:
    store = RedisStore(redis_server.url, node, timeout=1.0)
    await store.open()
    return store


async def test_job_record_and_output_round_trip(redis_server):
    store = await open_store(redis_server)
    await store.apply(
        [
            SaveJob(job("a")),
            AppendOutput("a", 0, 0, 0, b"hello "),
            AppendOutput("a", 1, 1, 6, b"\xff\x00binary"),
            AppendOutput("a", 2, 0, 14, b"world\n"),
        ]
    )
    got = await store.get_job("a")
    assert got is not None and got.command == "echo hi" and got.node == "n1"
    chunks = await store.read_output("a", 0, 1 << 20)
    assert b"".join(c.data for c in chunks) == b"hello \xff\x00binaryworld\n"
    assert [c.stream for c in chunks] == [0, 1, 0]
    # Reading from the middle of a chunk returns the chunk that holds the offset.
    middle = await store.read_output("a", 8, 1 << 20)
    assert middle[0].offset == 6
    assert await store.output_end("a") == 20
    await store.close()


async def test_replayed_writes_are_stored_once(redis_server):
    store = await open_store(redis_server)
    batch = [SaveJob(job("a")), AppendOutput("a", 0, 0, 0, b"x" * 10), AppendOutput("a", 1, 0, 10, b"y")]
    await store.apply(batch)
    await store.apply(batch)  # a journal replay after a half-acknowledged pipeline
    chunks = await store.read_output("a", 0, 1 << 20)
    assert b"".join(c.data for c in chunks) == b"x" * 10 + b"y"
    await store.close()


async def test_history_list_is_newest_first_and_filters(redis_server):
    store = await open_store(redis_server)
    t = time.time()
    await store.apply(
        [
            SaveJob(job("j1", command="make build", queued_at=t - 30, session="s1")),
            SaveJob(job("j2", command="make test", queued_at=t - 20, reason=JobReason.TIMEOUT)),
            SaveJob(
                job(
                    "j3",
                    command="ls -la",
                    queued_at=t - 10,
                    session="s1",
                    state=JobState.RUNNING,
                    reason=None,
                )
            ),
        ]
    )
    ids = [j.id for j in await store.list_jobs(HistoryParams())]
    assert ids == ["j3", "j2", "j1"]
    assert [j.id for j in await store.list_jobs(HistoryParams(session="s1"))] == ["j3", "j1"]
    assert [j.id for j in await store.list_jobs(HistoryParams(status="timeout"))] == ["j2"]
    assert [j.id for j in await store.list_jobs(HistoryParams(status="running"))] == ["j3"]
    assert [j.id for j in await store.list_jobs(HistoryParams(grep="^make"))] == ["j2", "j1"]
    assert [j.id for j in await store.list_jobs(HistoryParams(since=t - 15))] == ["j3"]
    assert [j.id for j in await store.list_jobs(HistoryParams(limit=1))] == ["j3"]
    await store.close()


async def test_sessions_track_jobs_and_activity(redis_server):
    store = await open_store(redis_server)
    t = time.time()
    await store.apply(
        [
            SaveJob(job("a", session="review", queued_at=t - 5)),
            SaveJob(job("b", session="review", queued_at=t)),
            SaveJob(job("c", session="other", queued_at=t - 100)),
        ]
    )
    sessions = await store.sessions(10)
    assert [s.name for s in sessions] == ["review", "other"]
    assert sessions[0].jobs == 2
    detail = await store.session("review", 10)
    assert detail is not None and [j.id for j in detail.jobs] == ["b", "a"]
    assert await store.session("nope", 10) is None
    await store.close()


async def test_two_nodes_share_one_redis(redis_server):
    a = await open_store(redis_server, "node-a")
    b = await open_store(redis_server, "node-b")
    await a.apply([SaveJob(job("x", node="node-a")), AppendOutput("x", 0, 0, 0, b"from a")])
    await b.apply([SaveJob(job("y", node="node-b", state=JobState.RUNNING, reason=None))])
    # Either node can read the other's records and output.
    got = await b.get_job("x")
    assert got is not None and got.node == "node-a"
    assert b"".join(c.data for c in await b.read_output("x", 0, 100)) == b"from a"
    assert [j.id for j in await a.list_jobs(HistoryParams(node="node-b"))] == ["y"]
    # Crash recovery only concerns a node's own jobs.
    assert await a.unfinished_jobs() == []
    assert [j.id for j in await b.unfinished_jobs()] == ["y"]
    await a.close()
    await b.close()


async def test_prune_by_age_and_count_keeps_running_jobs(redis_server):
    store = await open_store(redis_server)
    t = time.time()
    await store.apply([SaveJob(job(f"old{i}", queued_at=t - 1000 - i)) for i in range(5)])
    await store.apply([SaveJob(job("live", queued_at=t - 5000, state=JobState.RUNNING, reason=None))])
    await store.apply([SaveJob(job(f"new{i}", queued_at=t - i)) for i in range(5)])
    await store.apply([AppendOutput("old0", 0, 0, 0, b"data")])
    assert await store.prune(older_than=500, keep=None) == 5
    assert await store.get_job("old0") is None
    assert await store.read_output("old0", 0, 100) == []
    assert (await store.get_job("live")) is not None
    assert await store.prune(older_than=None, keep=3) == 2  # keep counts finished jobs only
    remaining = {j.id for j in await store.list_jobs(HistoryParams(limit=100))}
    assert remaining == {"live", "new0", "new1", "new2"}
    await store.close()


async def test_durations_are_kept_per_signature(redis_server):
    store = await open_store(redis_server)
    await store.apply(
        [RecordDuration("sleep <n>", float(i), True, False, time.time(), f"j{i}") for i in range(5)]
    )
    runs = await store.durations("sleep <n>", 3)
    assert [r.duration for r in runs] == [4.0, 3.0, 2.0]
    assert await store.signatures(10) == ["sleep <n>"]
    await store.close()


async def test_a_hung_redis_times_out_instead_of_hanging(redis_server):
    from ccxd.store.base import StoreUnavailable

    store = await open_store(redis_server)
    redis_server.pause()
    try:
        started = time.monotonic()
        try:
            await store.get_job("a")
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("a stopped redis answered")
        assert time.monotonic() - started < 5
    finally:
        redis_server.cont()
    await asyncio.wait_for(store.ping(), 5)
    await store.close()


async def _dump(store: RedisStore) -> dict[bytes, object]:
    """Every key's type and contents, as Redis holds them."""
    r = store.redis
    out: dict[bytes, object] = {}
    for key in sorted(await r.keys("*")):
        kind = (await r.type(key)).decode()
        if kind == "string":
            out[key] = await r.get(key)
        elif kind == "hash":
            out[key] = await r.hgetall(key)
        elif kind == "zset":
            out[key] = await r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = sorted(await r.smembers(key))
        elif kind == "list":
            out[key] = await r.lrange(key, 0, -1)
        else:
            out[key] = kind
    return out


def _writes() -> list:
    from ccxd.store.ops import RecordMetric

    t = 1_700_000_000.5
    return [
        SaveJob(job("a", session="s1", state=JobState.RUNNING, reason=None, queued_at=t)),
        SaveJob(job("a", session="s1", queued_at=t)),
        SaveJob(job("b", queued_at=t + 1)),
        RecordDuration("echo hi", 0.25, True, False, t + 2, "a"),
        RecordMetric("echo hi", "exited", 0, 0.25, t + 2),
        RecordMetric("echo hi", "timeout", None, 1.5, t + 3),
    ]


async def test_scripted_writes_leave_exactly_what_plain_commands_leave(redis_server):
    # The scripts (one command per write) must store what the plain commands store.
    store = await open_store(redis_server)
    await store.redis.flushall()
    store._scripts = False
    await store.apply(_writes())
    plain = await _dump(store)
    await store.redis.flushall()
    store._scripts = True
    await store.apply(_writes())
    assert await _dump(store) == plain
    assert any(k.endswith(b":sessions") for k in plain) and len(plain) >= 10
    await store.close()


async def test_a_redis_that_lost_its_scripts_gets_them_again_and_nothing_is_lost(redis_server):
    store = await open_store(redis_server)
    await store.redis.flushall()
    await store.redis.script_flush()  # what a restarted Redis has
    await store.apply(_writes())
    assert (await store.get_job("a")).session == "s1"
    assert len(await store.durations("echo hi", 10)) == 1
    [metrics] = await store.metrics(10)
    assert metrics.count == 2  # each counted once: a refused script ran nothing
    await store.close()
