"""Admission thresholds hold queued jobs back; timeouts stretch under load; ccxctl top."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from ccxctl.top import top_rows
from ccxd.cgroups.admission import admission_block, stretch_factor
from ccxd.protocol import JobFinished, JobInfo, Limits, Usage
from tests.ccxctl.test_ccxctl import ccxctl
from tests.helpers import RawConnection


def test_admission_names_the_threshold_that_holds_jobs_back():
    assert admission_block(1 << 30, 0.5, 2, 2 << 30, None) == (
        "memory: 1.0G available < admit_min_memory 2.0G"
    )
    assert admission_block(4 << 30, 7.0, 2, 2 << 30, 3.0) == "load: 3.50 per CPU > admit_max_load 3.00"
    assert admission_block(4 << 30, 5.0, 2, 2 << 30, 3.0) is None
    assert admission_block(None, None, 2, 1, 1.0) is None  # nothing to read: never blocks


def test_stretch_is_the_load_per_cpu_above_one_capped():
    assert stretch_factor(1.0, 2, 3.0) == 1.0
    assert stretch_factor(5.0, 2, 3.0) == 2.5
    assert stretch_factor(50.0, 2, 3.0) == 3.0
    assert stretch_factor(50.0, 2, 1.0) == 1.0  # disabled


def test_top_rows_show_busiest_active_jobs_first():
    def job(i: str, state: str, cpu: float) -> JobInfo:
        return JobInfo(
            id=i,
            state=state,  # type: ignore[arg-type]
            command="x",
            limits=Limits(memory=2 << 30, cpus=1.5),
            usage=Usage(cpu_percent=cpu, memory=1 << 20, memory_peak=3 << 20, pids=2),
        )

    rows = top_rows([job("a", "running", 5), job("b", "finished", 99), job("c", "running", 50)])
    assert [r[0] for r in rows] == ["c", "a"]
    assert rows[0][2:8] == ["50", "0.0s", "1.0M", "3.0M", "2.0G 1.5cpu", "2"]


async def test_queued_jobs_wait_for_memory_then_start_after_reload(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_STORE": "memory"}, start=False)
    conf = d.config_home / "ccxd" / "config.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('admit_min_memory = "1000T"\n')
    d.start()
    c = await d.client()
    job = await c.start("echo admitted", subscribe=True)
    assert job.state == "queued" and "admit_min_memory 1000.0T" in (job.wait_reason or "")
    assert (await c.get(job.id)).state == "queued"
    conf.write_text("")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    final = None
    async for ev in c.events(job.id):
        if isinstance(ev, JobFinished):
            final = ev.job
    assert final is not None and final.reason == "exited" and final.wait_reason is None
    await c.close()


async def test_top_lists_a_running_job_with_its_usage(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_STORE": "memory", "CCXD_STATS_INTERVAL": "0.2"})
    c = await d.client()
    python = os.path.realpath(sys.executable)
    job = await c.start([python, "-c", "import time\nx = bytearray(30 << 20)\ntime.sleep(60)"], memory="1G")
    try:
        raw = RawConnection(d.socket)  # job.stats tells when a sample has the allocation
        raw.call("job.subscribe", {"job_id": job.id, "output": False, "stats": True})
        while True:
            msg = raw.recv()
            if msg.get("method") == "job.stats" and msg["params"]["usage"]["memory"] > 30 << 20:
                break
        raw.close()
        res = await asyncio.to_thread(ccxctl, d, "top", "--once")
        lines = res.stdout.decode().splitlines()
        assert lines[0].split("\t")[:3] == ["id", "state", "cpu%"]
        row = next(line.split("\t") for line in lines[1:] if line.startswith(job.id))
        assert row[1] == "running" and row[6] == "1.0G" and row[4].endswith("M")
    finally:
        await c.cancel(job.id)
        await c.close()
