"""A daemon on Redis Sentinel: the primary dies mid-run and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from ccxd.protocol import JobState
from ccxd.store.redis_store import RedisStore
from tests.ccxctl.test_ccxctl import ccxctl
from tests.redis_topology import PASSWORD, USER, RedisTopology, redis_topology

pytestmark = pytest.mark.redis
__all__ = ["redis_topology"]

NODE = "n1"


def expected_output(i: int) -> bytes:
    return f"start {i}\nend {i}\n".encode()


async def test_a_failover_mid_run_keeps_every_acknowledged_job_and_the_daemon_reconnects_by_itself(
    daemon_factory, redis_topology: RedisTopology
):
    topo = redis_topology
    env = {"CCXD_REDIS_URL": topo.url(), "CCXD_NODE_ID": NODE, "CCXD_STORE_TIMEOUT": "0.5"}
    d = daemon_factory(extra_env=env)
    c = await d.client()
    watcher = await d.client()
    assert (await c.status()).store.startswith("redis (sentinel ccxd via 127.0.0.1:")

    acknowledged: list[str] = []
    submitting = True
    answers: list[float] = []  # how long each status call took while the primary was gone

    async def submit() -> None:
        i = 0
        while submitting:
            info = await c.start(f"echo start {i}; sleep 0.3; echo end {i}")
            acknowledged.append(info.id)
            i += 1
            await asyncio.sleep(0.05)

    async def watch() -> None:
        while submitting:
            t = time.monotonic()
            async with asyncio.timeout(5):
                await watcher.status()
            answers.append(time.monotonic() - t)
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(submit()), asyncio.create_task(watch())]
    while len(acknowledged) < 10:  # jobs are running and finishing when the primary dies
        await asyncio.sleep(0.05)
    old = await asyncio.to_thread(topo.kill_primary)
    killed_at = len(acknowledged)
    new = await asyncio.to_thread(topo.wait_promoted, old)
    await asyncio.sleep(1.0)  # submissions go on across the promotion and after it
    submitting = False
    await asyncio.gather(*tasks)
    assert len(acknowledged) > killed_at + 5, "submissions stalled while the primary was gone"
    assert max(answers) < 3, f"status answered slowly while failing over: {max(answers):.1f} s"

    finished = [await c.wait(job_id) for job_id in acknowledged]
    assert all(j.state is JobState.FINISHED and j.exit_code == 0 for j in finished)

    # The daemon found the new primary and replayed its journal by itself.
    shown = f"redis (sentinel ccxd via {','.join(f'127.0.0.1:{s.port}' for s in topo.sentinels)})"
    primary = f"primary {new[0]}:{new[1]}"
    deadline = time.monotonic() + 30
    while (store := (await c.status()).store) != f"{shown}: {primary}":
        assert time.monotonic() < deadline, store
        await asyncio.sleep(0.1)  # the daemon has no notification for a store that is back
    assert "degraded" not in ccxctl(d, "status").stdout.decode()
    assert f"{shown}: {primary}" in ccxctl(d, "status").stdout.decode()

    # Every acknowledged job, and its output, is in the promoted replica.
    direct = RedisStore(f"redis://{USER}:{PASSWORD}@{new[0]}:{new[1]}", NODE)
    await direct.open()
    try:
        deadline = time.monotonic() + 30
        while True:  # the last records are written behind the jobs' end
            records = {i: await direct.get_job(i) for i in acknowledged}
            if all(r is not None and r.state is JobState.FINISHED for r in records.values()):
                break
            assert time.monotonic() < deadline, [i for i, r in records.items() if r is None]
            await asyncio.sleep(0.1)
        for n, job_id in enumerate(acknowledged):
            chunks = await direct.read_output(job_id, 0, 1 << 20)
            assert b"".join(ch.data for ch in chunks) == expected_output(n), job_id
    finally:
        await direct.close()
    assert d.proc is not None and d.proc.poll() is None
    log = d.log()
    assert PASSWORD not in log and "sentinel-pw" not in log
    await c.close()
    await watcher.close()


async def test_wrong_passwords_stop_the_start_saying_who_refused_them(
    daemon_factory, redis_topology: RedisTopology
):
    topo = redis_topology
    every = ", ".join(f"127.0.0.1:{s.port}" for s in topo.sentinels)
    primary = "{}:{}".format(*topo.primary.address)

    def start(url: str) -> str:
        d = daemon_factory(extra_env={"CCXD_REDIS_URL": url}, start=False)
        done = subprocess.run([*d.command, *d.args], env=d.env, capture_output=True, timeout=60, check=False)
        assert done.returncode == 69  # EX_UNAVAILABLE
        log = done.stderr.decode()
        assert "wrong-pw" not in log
        line = next(ln for ln in log.splitlines() if ln.startswith("ccxd: cannot reach the store: "))
        return line.removeprefix("ccxd: cannot reach the store: ")

    said = start(topo.url(sentinel_password="wrong-pw"))
    assert said.startswith("redis (sentinel ccxd via ") and "no primary known; the sentinels: " in said
    assert f"{every}: refused the sentinel credentials (" in said and "check sentinel_password)" in said

    said = start(topo.url(password="wrong-pw"))
    assert said.startswith("redis: invalid username-password pair")
    assert said.endswith(f"; the sentinels: {every}: name the primary {primary}")
