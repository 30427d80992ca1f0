"""A fleet on a Sentinel-managed Redis: the primary is killed mid-run, nothing acknowledged is lost.

The Redis topology (primary, replica, three sentinels: tests/redis_topology.py)
lives on loopback, so these two nodes share the root network namespace, each
with its own state, runtime and config directories.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccxd.client import ClientError
from tests.fleet.harness import Fleet
from tests.fleet.test_fleet import finished, poll, read_all
from tests.redis_topology import RedisTopology

pytestmark = [pytest.mark.redis]

LEASE = 4.0
"""Longer than a failover takes here (down-after 1 s, then an election): no node may look lost."""


async def read_output(client: Any, job_id: str, want: bytes) -> bool:
    got = await read_all(client, job_id)
    assert want.startswith(got), f"job {job_id}'s stored output: {got!r}"
    return got == want


@pytest.fixture
def topology(tmp_root: Path) -> Iterator[RedisTopology]:
    topo = RedisTopology(tmp_root / "topology").start()
    try:
        yield topo
    finally:
        topo.stop()


async def test_primary_killed_mid_run_loses_no_acknowledged_job_or_finished_record(
    topology: RedisTopology,
) -> None:
    with Fleet(netns=False, names=("A", "B"), lease=LEASE, redis_url=lambda _: topology.url()) as fleet:
        fleet.wait_states({"A": "up", "B": "up"}, 15)
        async with await fleet["A"].client() as a, await fleet["B"].client() as b:
            # Finished before the failover: their records and output are in Redis.
            done = [await a.start(f"print -r -- done {i}") for i in range(20)]
            before = {j.id: await finished(a, j.id) for j in done}
            assert {r.node for r in before.values()} <= {"A", "B"}
            # Running across both nodes when the primary dies, and finishing after it.
            mid_run = [await a.start("sleep 2; print -r -- survived") for _ in range(6)]

            old = topology.kill_primary()
            # Submissions while the sentinels elect a new primary and after: each either refused in
            # words or acknowledged, and then run.
            acknowledged, refused = [], []
            promoted = False
            deadline = time.monotonic() + 30
            while not (promoted and len(acknowledged) >= 3) and time.monotonic() < deadline:
                try:
                    acknowledged.append(await b.start(f"print -r -- during {len(refused)}"))
                except ClientError as exc:
                    refused.append(str(exc))
                promoted = promoted or topology.primary_address() not in (None, old)
                await asyncio.sleep(0.1)
            topology.wait_promoted(old)
            assert len(acknowledged) >= 3, refused[-3:]
            assert all(refused), "a refusal says why"

            for job in mid_run:
                record = await finished(b, job.id, timeout=30)
                assert (record.exit_code, record.node in ("A", "B")) == (0, True), record
                # Written while Redis was away: journaled by its node, stored once a primary answers.
                await poll(
                    functools.partial(read_output, b, job.id, b"survived\n"), 20, f"{job.id}'s output stored"
                )
            for job in acknowledged:
                record = await finished(a, job.id, timeout=30)
                assert record.exit_code == 0, record
                assert (await read_all(a, job.id)).startswith(b"during ")
            for job_id, record in before.items():
                again = await b.get(job_id)
                assert (again.state, again.exit_code, again.node) == ("finished", 0, record.node)
                assert (await read_all(b, job_id)).startswith(b"done ")
            # The fleet works on the new primary, and no node was thought lost meanwhile.
            after = await a.start("print -r -- after")
            assert (await finished(b, after.id)).exit_code == 0
            states: dict[str, Any] = fleet.node_states()
            assert states == {"A": "up", "B": "up"}
