"""Command signatures are bounded: past the limit, those seen longest ago are forgotten."""

from __future__ import annotations

import time

import pytest

from ccxd.store import keys
from ccxd.store.memory import MemoryStore
from ccxd.store.ops import RecordDuration, RecordMetric
from ccxd.store.redis_store import RedisStore


@pytest.fixture(params=["redis", "memory"])
async def store(request):
    if request.param == "memory":
        yield MemoryStore("n1")
        return
    redis_server = request.getfixturevalue("redis_server")
    s = RedisStore(redis_server.url, "n1", timeout=1.0)
    await s.open()
    await s.redis.flushall()
    yield s
    await s.close()


def ran(sig: str, at: float) -> list:
    """What the end of one job of ``sig`` writes: its run time and its metrics."""
    return [RecordDuration(sig, 1.0, True, False, at, f"j-{sig}-{at}"), RecordMetric(sig, "exited", 0, 1.0, at)]


async def test_past_the_limit_the_signatures_seen_longest_ago_are_forgotten(store) -> None:
    t = time.time()
    await store.apply([op for i in range(5) for op in ran(f"cmd{i}", t + i)])
    assert await store.prune_signatures(5) == 0
    assert await store.prune_signatures(3) == 2
    assert await store.signatures(10) == ["cmd2", "cmd3", "cmd4"]
    assert {m.signature for m in await store.metrics(10)} == {"cmd2", "cmd3", "cmd4"}
    assert await store.durations("cmd0", 5) == [] and len(await store.durations("cmd4", 5)) == 1
    # A signature seen again is the newest: the next one to go is the one seen longest ago.
    await store.apply(ran("cmd2", t + 10))
    assert await store.prune_signatures(2) == 1
    assert await store.signatures(10) == ["cmd2", "cmd4"]
    assert len(await store.durations("cmd2", 5)) == 2  # its run times stay whole


async def test_a_forgotten_signature_leaves_nothing_in_redis(redis_server) -> None:
    s = RedisStore(redis_server.url, "n1", timeout=1.0)
    await s.open()
    await s.redis.flushall()
    t = time.time()
    await s.apply(ran("old", t) + ran("new", t + 1))
    before = set(await s.redis.keys("*"))
    assert await s.prune_signatures(1) == 1
    h = keys.signature_hash("old").encode()
    left = set(await s.redis.keys("*"))
    assert before - left == {keys.durations("old").encode(), keys.metrics("old").encode()}
    assert await s.redis.hget(keys.SIGNATURES, h) is None
    assert await s.redis.zscore(keys.METRICS, h) is None
    assert await s.redis.zscore(keys.SIGNATURES_SEEN, h) is None
    await s.close()


async def test_signatures_an_older_version_recorded_count_as_seen_longest_ago(redis_server) -> None:
    s = RedisStore(redis_server.url, "n1", timeout=1.0)
    await s.open()
    await s.redis.flushall()
    t = time.time()
    never_ran = RecordMetric("failed-to-start", "failed_to_start", None, 0.0, t + 100)  # metrics only
    await s.apply([*ran("legacy", t + 100), never_ran])
    # As an older version left them: no entry in the index of when each was last seen.
    await s.redis.delete(keys.SIGNATURES_SEEN)
    await s.apply(ran("current", t))
    assert await s.prune_signatures(1) == 2
    assert await s.signatures(10) == ["current"]
    assert [m.signature for m in await s.metrics(10)] == ["current"]
    await s.close()


async def test_the_retention_round_keeps_history_max_signatures(tmp_path) -> None:
    from ccxd.config import Config
    from ccxd.history.recorder import EstimateSettings, Recorder
    from ccxd.store.writer import StoreWriter

    assert Config().history_max_signatures == 10_000
    store = MemoryStore("n1")
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    rec = Recorder(store, writer, lambda: EstimateSettings(False, None, 3.0, 5, None))
    t = time.time()
    await store.apply([op for i in range(4) for op in ran(f"cmd{i}", t + i)])
    await rec.retain(None, None, None)  # no limit: all kept
    assert len(await store.signatures(10)) == 4
    await rec.retain(None, None, 2)
    assert await store.signatures(10) == ["cmd2", "cmd3"]
