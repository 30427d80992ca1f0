"""Following a job's output from Redis from any byte offset while the job still writes."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio as aioredis

from ccxd.fleet.output_follow import follow_output
from ccxd.protocol import JobInfo, JobReason, JobState
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.redis_store import RedisStore

pytestmark = pytest.mark.redis


async def test_every_byte_once_from_any_offset_while_writes_go_on(redis_server, r: aioredis.Redis) -> None:
    rng = random.Random(23)
    chunks: list[tuple[int, bytes]] = []
    offset = 0
    for seq in range(120):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        chunks.append((seq % 2, data))
        offset += len(data)
    everything = b"".join(d for _, d in chunks)
    boundaries = [0]
    for _, d in chunks:
        boundaries.append(boundaries[-1] + len(d))
    # Chunk starts, the byte after, the last byte of a chunk, the very end and past it.
    starts = sorted(
        {
            0,
            1,
            boundaries[5],
            boundaries[5] + 1,
            boundaries[40] - 1,
            len(everything) - 1,
            len(everything),
            rng.randrange(len(everything)),
        }
    )

    store = RedisStore(redis_server.url, "B", timeout=2.0)
    await store.open()
    half = asyncio.Event()
    first_written = asyncio.Event()

    async def write() -> None:
        at = 0
        for seq, (stream, data) in enumerate(chunks):
            await store.apply([AppendOutput("j1", seq, stream, at, data)])
            at += len(data)
            first_written.set()
            if seq == len(chunks) // 2:
                await half.wait()  # some followers start mid-run
            await asyncio.sleep(0)
        info = JobInfo(id="j1", state=JobState.FINISHED, command="x", node="B", reason=JobReason.EXITED)
        await store.apply([SaveJob(info)])

    async def finished() -> bool:
        info = await store.get_job("j1")
        return info is not None and info.state is JobState.FINISHED

    async def follow(start: int) -> tuple[int, bytes, list[tuple[int, int]]]:
        client = aioredis.Redis.from_url(redis_server.url)
        got = bytearray()
        pieces = []
        try:
            async for at, stream, data in follow_output(client, "B", "j1", start, finished, block_ms=50):
                assert at == start + len(got)  # contiguous: nothing lost, nothing repeated
                pieces.append((at, stream))
                got += data
        finally:
            await client.aclose()
        return start, bytes(got), pieces

    try:
        writer = asyncio.create_task(write())
        await first_written.wait()
        early = [asyncio.create_task(follow(s)) for s in starts]
        half.set()
        late = [asyncio.create_task(follow(s)) for s in starts]
        results = await asyncio.wait_for(asyncio.gather(*early, *late), 30)
        await writer
    finally:
        await store.close()
    chunk_of = {b: stream for b, (stream, _) in zip(boundaries, chunks, strict=False)}
    for start, got, pieces in results:
        assert got == everything[start:], start
        for at, stream in pieces:  # each piece keeps its chunk's stream
            chunk_start = max(b for b in boundaries[:-1] if b <= at)
            assert stream == chunk_of[chunk_start]


async def test_a_job_without_output_ends_when_finished(redis_server, r: aioredis.Redis) -> None:
    done = False

    async def finished() -> bool:
        return done

    async def collect() -> list[tuple[int, int, bytes]]:
        return [x async for x in follow_output(r, "B", "nothing", 0, finished, block_ms=20)]

    task = asyncio.create_task(collect())
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # it waits while the job is not finished
        assert not task.done()
        await asyncio.sleep(0.02)
    done = True
    assert await asyncio.wait_for(task, 5) == []
