"""Crash recovery kills what the private job files name, whatever the store says (issue 19).

Real processes marked with ``CCXD_JOB_ID`` as a job's processes are, a real
job file, and a store that says something else: what whoever else writes to a
shared Redis could make it say (a real Redis here).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.jobs import jobfile
from ccxd.protocol import JobInfo, JobReason, JobState
from ccxd.store.ops import SaveJob
from ccxd.store.redis_store import RedisStore
from ccxd.store.writer import StoreWriter


def settings() -> EstimateSettings:
    return EstimateSettings(enabled=False, default=None, k=3.0, min_samples=5, bootstrap=None)


@pytest.fixture
def marked() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """``sleep`` processes carrying ``CCXD_JOB_ID``, by job id (all ended after the test)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
        p.wait()


def spawn(marked: dict[str, subprocess.Popen[bytes]], job_id: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["sleep", "300"], env={**os.environ, "CCXD_JOB_ID": job_id})
    marked[job_id] = p
    return p


def running(job_id: str) -> JobInfo:
    return JobInfo(id=job_id, state=JobState.RUNNING, command="sleep 300", queued_at=time.time(), node="n1")


async def test_the_store_alone_kills_nothing_and_cannot_spare_what_a_job_file_names(
    tmp_path: Path, marked: dict[str, subprocess.Popen[bytes]], redis_server: Any
) -> None:
    store = RedisStore(redis_server.url, "n1", timeout=1.0)
    await store.open()
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    writer.start()
    rec = Recorder(store, writer, settings)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    # Only the store calls "other" unfinished: a process of the user's that carries that id
    # (a job of another daemon, say) is none of this recovery's business.
    other = spawn(marked, "other")
    await store.apply([SaveJob(running("other"))])
    # The job file says "mine" ran when the daemon died; the store (forged) says it finished.
    mine = spawn(marked, "mine")
    jobfile.save(jobs, running("mine"))
    finished = running("mine")
    finished.state, finished.reason = JobState.FINISHED, JobReason.EXITED
    await store.apply([SaveJob(finished)])

    lost = await rec.recover(tmp_path / "spool", jobs_dir=jobs)

    assert [j.id for j in lost] == ["other"]  # recorded lost: that is only history
    assert other.poll() is None
    assert mine.wait(10) == -9  # its leftovers went, as for any job the daemon no longer runs
    assert not os.path.exists(jobfile.path(jobs, "mine"))
    await writer.close(timeout=5)
    await store.close()
