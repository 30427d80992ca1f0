"""History through a real daemon: restarts, crashes and Redis outages lose nothing."""

from __future__ import annotations

import asyncio
import signal
import time

import psutil
import pytest

from ccxd.protocol import (
    HistoryParams,
    JobFinished,
    JobList,
    JobStarted,
    OutputChunk,
    SessionList,
    SessionListParams,
    StatsParams,
    StatsResult,
)


async def collect(client, command: str, **options) -> tuple[bytes, object, list]:
    out = b""
    finished = None
    events = []
    async for ev in client.run(command, **options):
        events.append(ev)
        if isinstance(ev, OutputChunk):
            out += ev.raw()
        elif isinstance(ev, JobFinished):
            finished = ev.job
    return out, finished, events


async def history(client, **filters) -> list:
    res: JobList = await client.call("history.list", HistoryParams(**filters))
    return res.jobs


async def wait_store(client, expected: str, timeout: float = 30.0) -> str:
    """Wait until daemon.status reports the store as ``expected``.

    The daemon offers no notification for store recovery, so this polls status.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = (await client.status()).store
        if status == expected:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"store stayed {status!r}")
        await asyncio.sleep(0.05)


def job_processes(job_id: str) -> list[int]:
    marker = f"CCXD_JOB_ID={job_id}".encode()
    found = []
    for p in psutil.process_iter():
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(p.pid)
        except OSError:
            continue
    return found


async def test_history_and_output_survive_a_restart(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d")
    c = await d.client()
    out, job, _ = await collect(
        c, "printf 'line one\\n'; printf '\\xff\\xfe' >&2; echo done", session="build"
    )
    await c.close()
    assert d.stop() == 0

    d2 = daemon_factory(root=tmp_root / "d")  # same state dir: same embedded Redis data
    c2 = await d2.client()
    [stored] = await history(c2)
    assert stored.id == job.id and stored.reason == "exited" and stored.session == "build"
    assert stored.stdout_bytes == len(b"line one\ndone\n") and stored.stderr_bytes == 2
    page = await c2.read(job.id)
    assert b"".join(ch.raw() for ch in page.chunks) == out and page.eof
    replay = b""
    async for ev in c2.follow(job.id):
        if isinstance(ev, OutputChunk):
            replay += ev.raw()
    assert replay == out
    sessions: SessionList = await c2.call("session.list", SessionListParams())
    assert [(s.name, s.jobs) for s in sessions.sessions] == [("build", 1)]
    await c2.close()


async def test_sigkilled_daemon_leaves_lost_jobs_and_no_processes(daemon_factory, tmp_root):
    # Without the shim (job_shim = false) jobs cannot be adopted: the next daemon records them lost.
    # With it they are adopted (tests/supervision/test_adoption.py).
    d = daemon_factory(root=tmp_root / "d", extra_env={"CCXD_JOB_SHIM": "false"})
    c = await d.client()
    ids = []
    for i in range(3):
        job = await c.start(f"echo started {i}; sleep 300", subscribe=True)
        async for ev in c.events(job.id):
            if isinstance(ev, OutputChunk):
                break  # the job has written its line: it is running
        ids.append(job.id)
    await c.close()
    [redis_proc] = [p for p in psutil.Process(d.proc.pid).children() if p.name() == "redis-server"]
    d.stop(signal.SIGKILL)
    assert all(job_processes(i) for i in ids)  # orphans still run until the next start
    # Its private redis-server does not: it is told (SIGTERM, so it saves) when ccxd dies.
    redis_proc.wait(timeout=30)

    d2 = daemon_factory(root=tmp_root / "d")
    c2 = await d2.client()
    for i, job_id in enumerate(ids):
        info = await c2.get(job_id)
        assert info.state == "finished" and info.reason == "lost"
        assert "killed" in (info.error or "")
        # It ran from its start until the new daemon killed what was left of it.
        assert info.started_at is not None and info.finished_at is not None
        assert info.duration == pytest.approx(info.finished_at - info.started_at, abs=0.01)
        assert info.duration > 0
        page = await c2.read(job_id)
        assert b"".join(ch.raw() for ch in page.chunks) == f"started {i}\n".encode()
        assert job_processes(job_id) == []
        assert f"job {job_id} recorded as lost (" in d2.log()
        assert "10 output bytes kept" in d2.log().split(f"job {job_id} recorded as lost", 1)[1].split("\n")[0]
    assert {j.id for j in await history(c2, status="lost")} == set(ids)
    await c2.close()


async def test_redis_outage_loses_nothing_and_writes_nothing_twice(daemon_factory, redis_server):
    d = daemon_factory(extra_env={"CCXD_REDIS_URL": redis_server.url, "CCXD_STORE_TIMEOUT": "0.5"})
    c = await d.client()
    assert (await c.status()).store == "redis"
    redis_server.kill()
    expected = {}
    for i in range(50):
        out, job, _ = await collect(c, f"echo job {i}; head -c {100 + i} /dev/urandom")
        assert job.reason == "exited"
        expected[job.id] = out
    status = await c.status()
    assert status.store.startswith("redis: degraded (") and "pending" in status.store
    redis_server.start()
    await wait_store(c, "redis", timeout=30)
    assert (await c.status()).store == "redis"

    # A second daemon on the same Redis sees exactly what the first one stored.
    other = daemon_factory(extra_env={"CCXD_REDIS_URL": redis_server.url, "CCXD_NODE_ID": "other"})
    c2 = await other.client()
    listed = await history(c2, limit=100)
    assert {j.id for j in listed} == set(expected)
    for job_id, out in expected.items():
        page = await c2.read(job_id, max_bytes=1 << 20)
        assert b"".join(ch.raw() for ch in page.chunks) == out
    await c2.close()
    await c.close()


async def test_embedded_redis_is_restarted_when_it_dies(daemon):
    c = await daemon.client()
    assert (await c.status()).store == "redis (embedded)"
    [redis_proc] = [p for p in psutil.Process(daemon.proc.pid).children() if p.name() == "redis-server"]
    redis_proc.kill()
    out, job, _ = await collect(c, "echo while redis restarts")
    assert out == b"while redis restarts\n"
    # No event says "restarted": poll status until the store is healthy on a new server.
    deadline = time.monotonic() + 30
    while True:
        store = (await c.status()).store
        assert store in ("redis (embedded)", "redis (embedded): restarting") or store.startswith(
            "redis: degraded ("
        ), store
        again = [p for p in psutil.Process(daemon.proc.pid).children() if p.name() == "redis-server"]
        if store == "redis (embedded)" and again and again[0].pid != redis_proc.pid:
            break
        assert time.monotonic() < deadline, f"store stayed {store!r}"
        await asyncio.sleep(0.05)
    assert job.id in {j.id for j in await history(c)}
    await c.close()


async def test_timeout_estimates_come_from_successful_runs(daemon_factory):
    d = daemon_factory(
        extra_env={
            "CCXD_ESTIMATE_MIN_SAMPLES": "3",
            "CCXD_ESTIMATE_K": "2",
            "CCXD_ESTIMATE_MIN": "0.1",
            "CCXD_ESTIMATE_FLOOR": "0",  # the estimate itself, not the guard's floor
        }
    )
    c = await d.client()
    _, _first, events = await collect(c, "sleep 0.1")
    started = next(e for e in events if isinstance(e, JobStarted))
    assert started.timeout == 3600 and started.timeout_basis.startswith("bootstrap")
    for _ in range(3):
        await collect(c, "sleep 0.2")  # same signature: sleep <n>
    _, _job, events = await collect(c, "sleep 0.1")
    started = next(e for e in events if isinstance(e, JobStarted))
    assert "p95" in started.timeout_basis
    assert 0.2 < started.timeout < 2.0  # 2 × p95 of runs of about 0.1–0.2 s
    # An explicit timeout wins, and 0 means no timeout at all.
    _, explicit, _ = await collect(c, "sleep 0.1", timeout=50)
    assert explicit.timeout == 50 and explicit.timeout_basis == "explicit"
    _, none, _ = await collect(c, "sleep 0.1", timeout=0)
    assert none.timeout is None
    stats: StatsResult = await c.call("history.stats", StatsParams(command="sleep 9"))
    [sig] = stats.signatures
    assert sig.signature == "sleep <n>" and sig.count == 7 and sig.success_rate == 1.0
    assert sig.p50 is not None and sig.p95 is not None and sig.p50 <= sig.p95
    await c.close()


async def test_timed_out_runs_count_as_at_least_that_long(daemon_factory):
    d = daemon_factory(
        extra_env={"CCXD_ESTIMATE_MIN_SAMPLES": "2", "CCXD_ESTIMATE_K": "2", "CCXD_KILL_GRACE": "0.2"}
    )
    c = await d.client()
    for _ in range(2):
        await collect(c, "sleep 0.05")
    _, timed_out, _ = await collect(c, "sleep 30", timeout=1)
    assert timed_out.reason == "timeout"
    _, _job, events = await collect(c, "sleep 0.05")
    started = next(e for e in events if isinstance(e, JobStarted))
    assert "timed-out" in started.timeout_basis and started.timeout >= 2.0
    await c.close()


async def test_a_daemon_killed_before_the_store_saw_a_job_still_records_it(daemon_factory, redis_server, tmp_root):
    """Records are written behind; a job file on disk covers the window before they land."""
    root = tmp_root / "window"
    # Plain pipes: the running job dies with the daemon and is recorded lost (under the
    # shim it would be adopted: tests/supervision/test_adoption.py).
    env = {"CCXD_REDIS_URL": redis_server.url, "CCXD_STORE_TIMEOUT": "30", "CCXD_JOB_SHIM": "false"}
    d = daemon_factory(root=root, extra_env=env)
    c = await d.client()
    redis_server.pause()  # the store hangs: nothing the daemon submits from now on can land
    try:
        done, _job, _ = await collect(c, "echo finished", timeout=60)  # explicit timeout: no estimate lookup
        assert done == b"finished\n"
        running = await c.start("echo running; sleep 300", timeout=300, subscribe=True)
        async for ev in c.events(running.id):
            if isinstance(ev, OutputChunk):
                break
        await c.close()
        d.stop(signal.SIGKILL)
    finally:
        redis_server.cont()

    d2 = daemon_factory(root=root, extra_env=env)
    c2 = await d2.client()
    finished = await c2.get(_job.id)
    assert (finished.state, finished.reason, finished.exit_code) == ("finished", "exited", 0)
    assert b"".join(ch.raw() for ch in (await c2.read(_job.id)).chunks) == b"finished\n"
    lost = await c2.get(running.id)
    assert (lost.state, lost.reason) == ("finished", "lost") and "killed" in (lost.error or "")
    assert b"".join(ch.raw() for ch in (await c2.read(running.id)).chunks) == b"running\n"
    assert job_processes(running.id) == []
    await c2.close()
    # Once recorded, nothing is recovered twice.
    d2.stop()
    d3 = daemon_factory(root=root, extra_env=env)
    c3 = await d3.client()
    assert [j.id for j in await history(c3, status="lost")] == [running.id]
    await c3.close()
