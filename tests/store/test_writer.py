"""Write-behind with a journal: nothing lost, nothing twice, when Redis fails."""

from __future__ import annotations

import asyncio
import time

from ccxd.protocol import HistoryParams
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.redis_store import RedisStore
from ccxd.store.writer import StoreWriter

from .conftest import RedisProcess
from .test_redis_store import job


async def test_writes_survive_a_killed_redis_in_order_and_once(redis_server, tmp_root):
    store = RedisStore(redis_server.url, "n1", timeout=0.5)
    await store.open()
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=64 << 20)
    writer.start()
    writer.submit(SaveJob(job("before")))
    assert await writer.flush(5)

    redis_server.kill()
    for i in range(50):
        writer.submit(SaveJob(job(f"j{i}", queued_at=time.time() + i)))
        writer.submit(AppendOutput(f"j{i}", 0, 0, 0, f"output of {i}\n".encode()))
        writer.submit(AppendOutput(f"j{i}", 1, 1, len(f"output of {i}\n"), b"\xfe\xff"))
    await writer.wait_degraded(True, 20)
    assert writer.describe().startswith("redis: degraded (")
    assert writer.pending >= 100

    redis_server.start()  # same socket and append-only file
    await writer.wait_degraded(False, 20)
    assert writer.pending == 0
    listed = await store.list_jobs(HistoryParams(limit=100))
    assert {j.id for j in listed} == {"before"} | {f"j{i}" for i in range(50)}
    for i in (0, 17, 49):
        chunks = await store.read_output(f"j{i}", 0, 1 << 20)
        assert b"".join(c.data for c in chunks) == f"output of {i}\n".encode() + b"\xfe\xff"
    await writer.close()


async def test_writes_a_killed_redis_acknowledged_but_never_saved_are_written_again(tmp_root):
    # A server that keeps nothing on disk loses every acknowledged write when killed, as
    # appendfsync everysec loses the last ones: the writer must not count on them.
    redis_server = RedisProcess(tmp_root, persistent=False).start()
    try:
        store = RedisStore(redis_server.url, "n1", timeout=0.5)
        await store.open()
        writer = StoreWriter(store, tmp_root / "journal", journal_limit=64 << 20)
        writer.start()
    except BaseException:
        redis_server.stop()
        raise
    try:
        writer.submit(SaveJob(job("acknowledged")))
        writer.submit(AppendOutput("acknowledged", 0, 0, 0, b"its output\n"))
        assert await writer.flush(5)
        mark = writer.submitted
        assert writer.has_stored(mark)

        redis_server.kill()
        writer.submit(SaveJob(job("after", queued_at=time.time() + 1)))
        await writer.wait_degraded(True, 20)
        assert not writer.has_stored(mark)  # no longer known to be in the store

        redis_server.start()  # empty: the acknowledged writes are gone from Redis
        await writer.wait_degraded(False, 20)
        assert writer.has_stored(writer.submitted)
        listed = await store.list_jobs(HistoryParams(limit=10))
        assert {j.id for j in listed} == {"acknowledged", "after"}
        chunks = await store.read_output("acknowledged", 0, 1 << 20)
        assert b"".join(c.data for c in chunks) == b"its output\n"
    finally:
        await writer.close()
        redis_server.stop()
    await store.close()


async def test_a_journal_left_by_a_crash_is_replayed_on_start(redis_server, tmp_root):
    store = RedisStore(redis_server.url, "n1", timeout=0.5)
    await store.open()
    first = StoreWriter(store, tmp_root / "journal", journal_limit=1 << 20)
    first.degraded = True  # as if Redis had been down when the daemon died
    first.submit(SaveJob(job("from-last-run")))
    first.journal.close()  # the daemon dies here

    second = StoreWriter(store, tmp_root / "journal", journal_limit=1 << 20)
    assert second.degraded and second.pending == 1
    second.start()
    await second.wait_degraded(False, 20)
    assert (await store.get_job("from-last-run")) is not None
    await second.close()
    await store.close()


async def test_a_full_journal_drops_and_counts_instead_of_crashing(redis_server, tmp_root):
    store = RedisStore(redis_server.url, "n1", timeout=0.5)
    await store.open()
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=4096)
    writer.degraded = True
    for i in range(100):
        writer.submit(AppendOutput("big", i, 0, i * 1000, b"z" * 1000))
    assert writer.journal.dropped > 0
    assert writer.journal.size <= 4096
    writer.journal.close()
    await store.close()


async def test_has_stored_says_when_the_store_has_every_write_up_to_a_mark(redis_server, tmp_root):
    """What lets a finished job's spool go (``spool_max_total``): never before the store has its output."""
    store = RedisStore(redis_server.url, "n1", timeout=0.5)
    await store.open()
    left = StoreWriter(store, tmp_root / "journal", journal_limit=1 << 20)
    left.degraded = True  # a journal left by an earlier run: replayed first, counted as nobody's mark
    for i in range(3):
        left.submit(SaveJob(job(f"old{i}")))
    left.journal.close()

    writer = StoreWriter(store, tmp_root / "journal", journal_limit=1 << 20)
    writer.submit(SaveJob(job("a")))
    mark = writer.submitted
    assert not writer.has_stored(mark)
    writer.start()
    await writer.wait_degraded(False, 20)
    assert await writer.flush(5) and writer.has_stored(mark)

    redis_server.kill()
    writer.submit(SaveJob(job("b")))
    writer.submit(AppendOutput("b", 0, 0, 0, b"during the outage\n"))
    mark = writer.submitted
    await writer.wait_degraded(True, 20)
    assert not writer.has_stored(mark)
    redis_server.start()
    await writer.wait_degraded(False, 20)
    assert writer.has_stored(mark) and not writer.has_stored(mark + 1)
    assert b"".join(c.data for c in await store.read_output("b", 0, 1 << 20)) == b"during the outage\n"

    # Once a full journal dropped a write, no mark counts as stored again.
    writer.journal.limit = 0
    writer.degraded = True
    writer.submit(SaveJob(job("dropped")))
    assert writer.dropped == 1
    writer.degraded = False
    writer.submit(SaveJob(job("c")))
    assert await writer.flush(5) and not writer.has_stored(writer.submitted)
    await writer.close()
    await store.close()


async def test_the_writer_stops_promptly_while_it_probes_a_dead_redis(redis_server, tmp_root):
    # A daemon stopping while Redis is down must not hang: the probe's answer racing the
    # cancellation once swallowed it (Python 3.11's wait_for), and close() waited forever.
    store = RedisStore(redis_server.url, "n1", timeout=0.5)
    await store.open()
    redis_server.kill()
    for round_ in range(8):
        writer = StoreWriter(store, tmp_root / f"journal-{round_}", journal_limit=1 << 20)
        writer.start()
        writer.submit(SaveJob(job(f"j{round_}")))
        await writer.wait_degraded(True, 20)
        await asyncio.sleep(round_ % 2)  # at once, or as the next probe (every second) answers
        started = time.monotonic()
        await writer.close()
        assert time.monotonic() - started < 2.0, f"close took {time.monotonic() - started:.1f}s"
        assert writer.pending == 1  # journaled, not lost
