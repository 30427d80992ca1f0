"""A job whose leader exits normally leaves nothing behind, wherever its leftovers went.

The supervisor skips the /proc scan when it can prove nothing is left (empty
process group, no unexpected child of the subreaper); these cases must still
be found and killed.
"""

from __future__ import annotations

import asyncio

import pytest

from ccxd.protocol import JobFinished, OutputChunk
from tests.helpers import job_pids, run_job

LEFTOVERS = {
    "same-group": "sleep 300 &",
    "own-session": "setsid sleep 300 &",
    "own-group-same-session": "python3 -c 'import os,time; os.setpgid(0, 0); time.sleep(300)' &",
    "double-fork": "python3 -c 'import os,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\ntime.sleep(300)' &",
    "grandchild-in-own-group": "( python3 -c 'import os,time; os.setpgid(0, 0); time.sleep(300)' & sleep 300 ) &",
}


# How jobs are spawned and found: under ccxd-shim (the default) with cgroups where the
# host has them or with the process tree alone, or as the daemon's own children.
SPAWN_PATHS = {
    "shim": {},
    "shim-no-cgroups": {"CCXD_CGROUP_BACKEND": "none"},
    "direct": {"CCXD_JOB_SHIM": "false"},
}


@pytest.fixture(params=list(SPAWN_PATHS))
def daemon(request, daemon_factory):  # type: ignore[no-untyped-def]
    """The daemon of every test here, once per spawn path."""
    return daemon_factory(extra_env=SPAWN_PATHS[request.param])


@pytest.mark.parametrize("leftover", list(LEFTOVERS.values()), ids=list(LEFTOVERS))
async def test_leftovers_of_an_exited_leader_are_killed(client, leftover):
    # Another job keeps running, so the daemon has other children while this one ends.
    other = await client.start("sleep 30", timeout=0)
    out, _, job, _ = await run_job(client, f"{leftover} sleep 0.2; echo done")
    assert out == b"done\n" and job.reason == "exited" and job.exit_code == 0
    assert job_pids(job.id) == []  # job.finished is the sync point
    assert job_pids(other.id) != []  # and nothing else was touched
    await client.cancel(other.id)


async def test_many_short_jobs_leave_nothing(client):
    results = await asyncio.gather(*(run_job(client, "true") for _ in range(40)))
    for _, _, job, _ in results:
        assert job.reason == "exited" and job.exit_code == 0
        assert job_pids(job.id) == []


@pytest.mark.parametrize("path", list(SPAWN_PATHS))
async def test_cancelling_many_jobs_at_once_kills_every_process(daemon_factory, path):
    d = daemon_factory(extra_env={"CCXD_MAX_CONCURRENT_JOBS": "200", **SPAWN_PATHS[path]})
    c = await d.client()
    jobs = [await c.start("sleep 300 & echo up; sleep 300", subscribe=True, timeout=0) for _ in range(100)]

    async def until_output(job_id: str) -> None:
        async for ev in c.events(job_id):
            if isinstance(ev, OutputChunk):
                return

    await asyncio.gather(*(until_output(j.id) for j in jobs))
    await asyncio.gather(*(c.cancel(j.id) for j in jobs))
    for j in jobs:
        finished = [ev async for ev in c.follow(j.id) if isinstance(ev, JobFinished)]
        assert finished[0].job.reason == "cancelled"
        assert job_pids(j.id) == []  # job.finished is the sync point
    await c.close()
