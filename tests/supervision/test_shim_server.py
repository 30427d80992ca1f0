"""Shims forked by ``ccxd-shim --server``: who is whose parent, a server that dies, what does not fit."""

from __future__ import annotations

import signal

import psutil
import pytest

from ccxd.protocol import JobStarted
from tests.helpers import run_job
from tests.supervision.test_adoption import _need_shim, follow_to_end  # noqa: F401 - an autouse fixture


def servers(daemon_pid: int) -> list[psutil.Process]:
    """The daemon's live ``ccxd-shim --server`` children."""
    found = []
    for p in psutil.Process(daemon_pid).children():
        try:
            if p.cmdline()[-1:] == ["--server"]:
                found.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass  # a child that just ended
    return found


async def start_waiting(client, go, n: int) -> list:
    """``n`` jobs that wait for the file ``go``, then print their number; once all run."""
    jobs = [
        await client.start(f"while [ ! -e {go} ]; do sleep 0.02; done; echo {i}", timeout=0, subscribe=True)
        for i in range(n)
    ]
    for job in jobs:
        async for ev in client.events(job.id):
            if isinstance(ev, JobStarted):
                break
    return [await client.get(job.id) for job in jobs]


@pytest.mark.parametrize("server", [True, False])
async def test_shims_are_the_servers_children_or_with_it_off_the_daemons(daemon_factory, tmp_root, server):
    env = {"CCXD_JOB_SHIM": "true", "CCXD_SHIM_SERVER": "true" if server else "false"}
    d = daemon_factory(root=tmp_root / "d", extra_env=env)
    c = await d.client()
    go = tmp_root / "go"
    running = await start_waiting(c, go, 6)
    found = servers(d.proc.pid)
    parent = found[0].pid if server else d.proc.pid
    assert len(found) == (1 if server else 0)
    for info in running:
        shim = psutil.Process(psutil.Process(info.pid).ppid())
        assert shim.ppid() == parent and shim.name() == "ccxd-shim"
    go.touch()
    for i, info in enumerate(running):
        out, final, _ = await follow_to_end(c, info.id, 0)
        assert (out, final.reason, final.exit_code) == (f"{i}\n".encode(), "exited", 0)
    await c.close()


async def test_a_killed_server_loses_no_job_and_the_next_job_gets_a_new_one(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env={"CCXD_JOB_SHIM": "true"})
    c = await d.client()
    go = tmp_root / "go"
    [info] = await start_waiting(c, go, 1)
    [server] = servers(d.proc.pid)
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    # Its shim runs on (the daemon, as subreaper, is its parent now) and the job ends normally.
    go.touch()
    out, final, _ = await follow_to_end(c, info.id, 0)
    assert (out, final.reason, final.exit_code) == (b"0\n", "exited", 0)
    out, _, job, _ = await run_job(c, "echo again")
    assert (out, job.reason) == (b"again\n", "exited")
    [again] = servers(d.proc.pid)
    assert again.pid != server.pid
    assert "shim server" in d.log() and "exited" in d.log()
    await c.close()


async def test_a_job_too_big_for_one_request_starts_without_the_server(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env={"CCXD_JOB_SHIM": "true"})
    c = await d.client()
    # About 220 KiB of command and environment: more than one request to the server carries
    # (each string stays below the kernel's 128 KiB per argument).
    big = "x" * 120_000
    out, _, job, _ = await run_job(c, f": {big}; echo ${{#BIG}}", env={"BIG": "y" * 100_000})
    assert (out, job.reason, job.exit_code) == (b"100000\n", "exited", 0)
    out, _, job, _ = await run_job(c, "echo small")
    assert (out, job.reason) == (b"small\n", "exited")
    await c.close()


async def test_a_missing_working_directory_is_reported_through_the_server(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env={"CCXD_JOB_SHIM": "true"})
    c = await d.client()
    out, _, job, _ = await run_job(c, "echo never", cwd=str(tmp_root / "nowhere"))
    assert out == b"" and job.reason == "failed_to_start"
    assert job.error is not None and "does not exist" in job.error
    assert len(servers(d.proc.pid)) == 1
    await c.close()
