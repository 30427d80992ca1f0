"""The adoption record keeps what a job was made from, never its secrets (ccxd/supervision/adoption.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from msgspec import structs

from ccxd.jobs.job import Job
from ccxd.output.log import OutputLog
from ccxd.protocol import JobState, StartParams
from ccxd.supervision import adoption, shimjob

SECRET = "s3cret-value-never-on-disk"


def running_job(pid: int, params: StartParams) -> Job:
    job = Job(
        "job1",
        params,
        argv=["claude", "-p", "hi"],
        shell=None,
        cwd="/",
        log=OutputLog(1 << 16),
        node="n",
        peer="p",
        timeout=None,
        idle_timeout=None,
    )
    job.pid = job.pgid = pid
    return job


def record_of(job: Job, leader_start: int) -> shimjob.AdoptRecord:
    info = structs.replace(job.info(), state=JobState.RUNNING)
    return shimjob.AdoptRecord(
        info, os.getpid(), shimjob.start_time(os.getpid()), leader_start, adoption.start_of(job)
    )


def test_the_record_keeps_the_request_and_chain_but_not_the_secrets(tmp_path: Path) -> None:
    params = StartParams(
        kind="claude", prompt="say hello", model="m", env={"GH_TOKEN": SECRET, "PLAIN": "x"}, memory="64M"
    )
    job = running_job(12345, params)
    job.attempt, job.retry_of = 3, "job0"
    job.retry_base, job.concision_level = structs.replace(params, prompt="the first prompt"), 2
    shimjob.save_record(tmp_path, record_of(job, 42))
    raw = (tmp_path / "job1.job").read_text()
    assert SECRET not in raw
    assert json.loads(raw)["env"] == {"GH_TOKEN": "***", "PLAIN": "x"}  # the job record as before
    (rec,) = shimjob.load_records(tmp_path)
    assert rec.start is not None and rec.info.attempt == 3 and rec.info.retry_of == "job0"
    assert rec.start.params == structs.replace(params, env={"GH_TOKEN": "***", "PLAIN": "x"})
    assert rec.start.retry_base is not None and rec.start.retry_base.prompt == "the first prompt"
    assert (rec.start.concision_level, rec.start.secret_env) == (2, ["GH_TOKEN"])


def test_secrets_come_back_from_the_running_leader_and_are_lost_once_it_is_gone(tmp_path: Path) -> None:
    env = {"GH_TOKEN": SECRET, "PLAIN": "x"}
    leader = subprocess.Popen(["sleep", "30"], env={**env, "PATH": os.environ["PATH"]})
    try:
        exec_done = time.monotonic() + 10  # a shim reports its job only once it exec'd: wait for that too
        while Path(f"/proc/{leader.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < exec_done
            time.sleep(0.01)
        job = running_job(leader.pid, StartParams(command=["sleep", "30"], env=env))
        shimjob.save_record(tmp_path, record_of(job, shimjob.start_time(leader.pid)))
        (rec,) = shimjob.load_records(tmp_path)
        start, lost = adoption.made_from(rec)
        assert start.params.env == env and lost == []
    finally:
        leader.kill()
        leader.wait()
    start, lost = adoption.made_from(rec)
    assert start.params.env == {"GH_TOKEN": "***", "PLAIN": "x"} and lost == ["GH_TOKEN"]


def test_a_pid_used_again_by_another_process_gives_no_secrets(tmp_path: Path) -> None:
    job = running_job(os.getpid(), StartParams(command=["x"], env={"GH_TOKEN": SECRET}))
    shimjob.save_record(tmp_path, record_of(job, shimjob.start_time(os.getpid()) + 1))
    (rec,) = shimjob.load_records(tmp_path)
    assert adoption.made_from(rec)[1] == ["GH_TOKEN"]


def test_an_unreadable_start_or_an_earlier_versions_record_still_adopts(tmp_path: Path) -> None:
    job = running_job(12345, StartParams(command="echo hi", env={"API_KEY": "***"}, tags=["t"]))
    shimjob.save_record(tmp_path, record_of(job, 42))
    path = tmp_path / "job1.job"
    data = json.loads(path.read_text())
    data["start"] = {"params": 5}
    path.write_text(json.dumps(data))
    (rec,) = shimjob.load_records(tmp_path)
    assert rec.start is None and rec.shim_pid == os.getpid()
    start, lost = adoption.made_from(rec)  # rebuilt from the job record, as earlier versions did
    assert (start.params.command, start.params.tags) == ("echo hi", ["t"]) and lost == ["API_KEY"]
