"""Issue 3 / goal 7: the newest 50 of 1,000,000 stored jobs."""

from __future__ import annotations

import asyncio
import time

from bench.daemon import BenchDaemon, RedisServer
from bench.harness import Context
from bench.report import Row
from bench.stats import median

__all__ = ["history", "populate"]

NODE = "bench"


async def populate(url: str, count: int, batch: int = 5000) -> float:
    """Store ``count`` finished jobs through ccxd's own store code (pipelined); return seconds."""
    from ccxd.protocol import JobInfo, JobReason, JobState
    from ccxd.store.ops import Op, SaveJob
    from ccxd.store.redis_store import RedisStore

    store = RedisStore(url, NODE, timeout=60)
    await store.open()
    now = time.time()
    t0 = time.perf_counter()
    try:
        for start in range(0, count, batch):
            ops: list[Op] = []
            for i in range(start, min(start + batch, count)):
                queued = now - (count - i) * 0.5
                ops.append(
                    SaveJob(
                        JobInfo(
                            id=f"h{i:09d}",
                            state=JobState.FINISHED,
                            command=f"make test SHARD={i % 97}",
                            shell="/usr/bin/zsh",
                            cwd="/home/user/src/app",
                            reason=JobReason.EXITED,
                            exit_code=0,
                            queued_at=queued,
                            started_at=queued + 0.001,
                            finished_at=queued + 0.2,
                            duration=0.199,
                            stdout_bytes=1200,
                            output_bytes=1200,
                            node=NODE,
                            peer="uid=0 pid=1",
                        )
                    )
                )
            await store.apply(ops)
    finally:
        await store.close()
    return time.perf_counter() - t0


def history(ctx: Context) -> list[Row]:
    """``history.list`` (newest 50) through the daemon vs the same query straight from Redis."""
    count = ctx.pick(1_000_000, 5_000)
    calls = ctx.pick(50, 5)
    with RedisServer() as redis:
        seconds = asyncio.run(populate(redis.url, count))
        ctx.log(f"stored {count:,} jobs in {seconds:.1f}s")
        settings = {"redis_url": redis.url, "node_id": NODE, "history_max_jobs": "none"}
        with BenchDaemon(ctx.log_dir, settings, name="history") as d:
            r = ctx.client("history-list", str(d.socket), redis.url, str(calls), "50", env=d.client_env)
    if r["returned"] != 50:
        raise RuntimeError(f"history.list returned {r['returned']} jobs, expected 50")
    a, b = median(r["ccxd_ms"]), median(r["direct_ms"])
    return [
        Row(
            case="7a History",
            metric=f"newest 50 of {count:,} stored jobs (`history.list`)",
            unit="ms",
            value=a,
            peer="same query straight to Redis (ccxd's store code, no daemon)",
            peer_value=b,
            ratio=a / b,
            ratio_label="×",
            goal=50.0,
            higher_is_better=False,
            goal_on_value=True,
            runs=calls,
            samples=r["ccxd_ms"],
            peer_samples=r["direct_ms"],
            note=f"populated through RedisStore.apply in {seconds:.0f} s ({count / seconds:,.0f} jobs/s); "
            "calls alternate daemon / direct",
        )
    ]
