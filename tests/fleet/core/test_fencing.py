"""The store writes a fleet job's record and output only while the writer's epoch is the job's."""

from __future__ import annotations

import logging
import time

import pytest
import redis.asyncio as aioredis

from ccxd.protocol import JobInfo, JobState
from ccxd.store import keys
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.redis_store import RedisStore

pytestmark = pytest.mark.redis


def record(job_id: str, state: JobState = JobState.RUNNING) -> JobInfo:
    return JobInfo(id=job_id, state=state, command="echo hi", queued_at=time.time(), node="B", session="s")


async def test_an_old_epochs_record_and_output_are_refused(redis_server, r: aioredis.Redis, caplog) -> None:
    store = RedisStore(redis_server.url, "B", timeout=2.0)
    await store.open()
    try:
        await r.hset(keys.fleet_job("j1"), "epoch", 2)
        caplog.set_level(logging.INFO, "ccxd.store")
        refused = await store.apply(
            [
                SaveJob(record("j1"), fleet_epoch=1),
                AppendOutput("j1", 0, 0, 0, b"stale run\n", fleet_epoch=1),
            ]
        )
        assert refused == []  # dropped and logged, not a refusal to count or retry
        assert await store.get_job("j1") is None
        assert await store.read_output("j1", 0, 1 << 20) == []
        assert await r.exists(keys.output("B", "j1")) == 0
        assert caplog.text.count("fleet epoch 1 is no longer the job's") == 2

        refused = await store.apply(
            [
                SaveJob(record("j1"), fleet_epoch=2),
                AppendOutput("j1", 0, 0, 0, b"current run\n", fleet_epoch=2),
                AppendOutput("j1", 0, 0, 0, b"current run\n", fleet_epoch=2),  # a replay: written once
            ]
        )
        assert refused == []
        got = await store.get_job("j1")
        assert got is not None and got.state is JobState.RUNNING
        assert [c.data for c in await store.read_output("j1", 0, 1 << 20)] == [b"current run\n"]
        session = await store.session("s", 10)
        assert session is not None and [j.id for j in session.jobs] == ["j1"]  # the indexes too

        # The reaper moved the epoch on: the late writes of the first run change nothing.
        await r.hincrby(keys.fleet_job("j1"), "epoch", 1)
        await store.apply(
            [
                SaveJob(record("j1", JobState.FINISHED), fleet_epoch=2),
                AppendOutput("j1", 1, 0, 12, b"late\n", fleet_epoch=2),
            ]
        )
        got = await store.get_job("j1")
        assert got is not None and got.state is JobState.RUNNING
        assert await store.output_end("j1") == 12
    finally:
        await store.close()


async def test_writes_of_other_jobs_are_not_fenced(redis_server, r: aioredis.Redis) -> None:
    store = RedisStore(redis_server.url, "B", timeout=2.0)
    await store.open()
    try:
        await r.hset(keys.fleet_job("j2"), "epoch", 5)  # even with a fleet hash of its id
        assert await store.apply([SaveJob(record("j2")), AppendOutput("j2", 0, 0, 0, b"x")]) == []
        assert await store.get_job("j2") is not None
        assert await store.output_end("j2") == 1
    finally:
        await store.close()
