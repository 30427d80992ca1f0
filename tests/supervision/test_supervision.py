"""How jobs run: shell, environment, process groups, timeouts, kills, queueing."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from ccxd.client import RemoteError
from ccxd.protocol import JobQueued, JobStarted, OutputChunk
from tests.helpers import job_pids, run_job


async def test_zsh_by_default_and_other_shells_on_request(client):
    out, _, job, _ = await run_job(client, "echo ${ZSH_VERSION:+zsh}")
    assert out == b"zsh\n" and job.shell.endswith("zsh")
    out, _, _, _ = await run_job(client, "echo ${BASH_VERSION:+bash}", shell="bash")
    assert out == b"bash\n"


async def test_argv_list_runs_without_a_shell(client):
    out, _, job, _ = await run_job(client, ["printf", "%s|", "$HOME", "a b"])
    assert out == b"$HOME|a b|" and job.shell is None


async def test_stdin_is_closed_unless_input_is_sent(client):
    out, _, job, _ = await run_job(client, "cat; echo done", timeout=20)
    assert out == b"done\n" and job.reason == "exited"
    out, _, _, _ = await run_job(client, "tr a-z A-Z", input="hello\n")
    assert out == b"HELLO\n"


async def test_environment_and_cwd(client, tmp_root):
    os.environ["CCXD_TEST_OUTER"] = "x"  # not in the daemon's env: jobs must not see it
    out, _, job, _ = await run_job(
        client,
        'echo "$PYTHONUNBUFFERED $NODE_NO_READLINE $MY_VAR $CCXD_JOB_ID ${HOME:+home} ${CCXD_TEST_OUTER:-unset}"; pwd',
        env={"MY_VAR": "mine"},
        cwd=str(tmp_root),
    )
    first, second = out.decode().splitlines()
    assert first == f"1 1 mine {job.id} home unset"
    assert second == str(tmp_root)


async def test_each_job_is_its_own_session_and_group_leader(client):
    out, _, job, _ = await run_job(client, "ps -o pid=,pgid=,sid= -p $$")
    pid, pgid, sid = map(int, out.split())
    assert pid == pgid == sid == job.pid


async def test_wall_timeout_keeps_partial_output(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_KILL_GRACE": "0.5"})
    c = await d.client()
    out, _, job, _ = await run_job(c, "echo before; sleep 30; echo after", timeout=0.5)
    assert out == b"before\n" and job.reason == "timeout" and job.signal == signal.SIGTERM
    await c.close()


async def test_idle_timeout_only_hits_quiet_jobs(client):
    out, _, job, _ = await run_job(client, "echo start; sleep 30", idle_timeout=0.5)
    assert job.reason == "idle_timeout" and out == b"start\n"
    busy = "for i in $(seq 12); do echo $i; sleep 0.1; done"
    out, _, job, _ = await run_job(client, busy, idle_timeout=0.5)  # runs 1.2 s, never quiet 0.5 s
    assert job.reason == "exited" and len(out.splitlines()) == 12


async def test_sigterm_then_sigkill_after_grace_for_a_job_that_traps_term(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_KILL_GRACE": "0.5"})
    c = await d.client()
    job = await c.start(
        "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.05; done", subscribe=True
    )
    out = b""
    async for ev in c.events(job.id):
        if isinstance(ev, OutputChunk):
            out += ev.raw()
            if out == b"ready\n":
                await c.cancel(job.id)
        elif ev.__class__.__name__ == "JobFinished":
            final = ev.job
    assert b"got TERM" in out
    assert final.reason == "cancelled" and final.signal == signal.SIGKILL
    await c.close()


@pytest.mark.parametrize(
    "escape",
    [
        # a grandchild that ignores SIGTERM and leaves the group with setsid
        "python3 -c 'import os,signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.setsid(); print(\"escaped\", flush=True); time.sleep(300)' &",
        # a double-forked daemon: its parent exits, it is re-parented (to ccxd, the subreaper)
        "python3 -c 'import os,signal,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(\"escaped\", flush=True); time.sleep(300)' &",
    ],
    ids=["setsid-grandchild", "double-fork-daemon"],
)
@pytest.mark.parametrize(
    "path",
    [{}, {"CCXD_CGROUP_BACKEND": "none"}, {"CCXD_JOB_SHIM": "false", "CCXD_CGROUP_BACKEND": "none"}],
    ids=["shim", "shim-no-cgroups", "direct-no-cgroups"],
)
async def test_escaped_descendants_die_with_the_job(daemon_factory, escape, path):
    d = daemon_factory(extra_env={"CCXD_KILL_GRACE": "0.5", **path})
    c = await d.client()
    out, _, job, _ = await run_job(c, f"{escape} sleep 30", timeout=1.5)
    assert b"escaped" in out and job.reason == "timeout"
    assert job_pids(job.id) == []  # job.finished is the sync point: nothing of it is left
    await c.close()


async def test_processes_left_behind_by_a_finished_leader_are_killed(client):
    out, _, job, _ = await run_job(client, "sleep 300 & echo spawned")
    assert out == b"spawned\n" and job.reason == "exited" and job.exit_code == 0
    assert job_pids(job.id) == []


async def test_exit_codes_and_signals_are_exact(client):
    _, _, job, _ = await run_job(client, "exit 7")
    assert (job.reason, job.exit_code, job.signal) == ("exited", 7, None)
    _, _, job, _ = await run_job(client, "kill -USR1 $$")
    assert (job.reason, job.exit_code, job.signal) == ("killed", None, signal.SIGUSR1)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"cwd": "/nonexistent/dir"}, "does not exist"),
        ({"cwd": "/etc/hostname"}, "not a directory"),
        ({"shell": "/nonexistent/shell"}, None),
    ],
)
async def test_jobs_that_cannot_start_say_why(client, options, needle):
    if needle is None:
        with pytest.raises(RemoteError) as exc:
            await client.start("true", **options)
        assert exc.value.code == -32602 and "not found" in exc.value.message
        return
    _, _, job, events = await run_job(client, "true", **options)
    assert job.reason == "failed_to_start" and needle in job.error
    assert job.pid is None and not any(isinstance(e, JobStarted) for e in events)


async def test_argv_program_missing_or_not_executable(client, tmp_root):
    _, _, job, _ = await run_job(client, ["/nonexistent/program"])
    assert job.reason == "failed_to_start" and "not found" in job.error
    script = tmp_root / "noexec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    _, _, job, _ = await run_job(client, [str(script)])
    assert job.reason == "failed_to_start" and "not executable" in job.error


async def test_concurrency_limit_queues_fifo_and_reports_positions(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_MAX_CONCURRENT_JOBS": "1", "CCXD_MAX_QUEUED_JOBS": "2"})
    c = await d.client()
    first = await c.start("echo one; read -t 30 line < /dev/zero; sleep 30", subscribe=True)
    second = await c.start("echo two", subscribe=True)
    third = await c.start("echo three", subscribe=True)
    assert (second.state, second.queue_position) == ("queued", 1)
    assert (third.state, third.queue_position) == ("queued", 2)
    with pytest.raises(RemoteError) as full:
        await c.start("echo four")
    assert full.value.code == -32002
    # Cancelling a queued job takes it out of line; the next one moves up.
    await c.cancel(second.id)
    positions = []
    async for ev in c.events(third.id):
        if isinstance(ev, JobQueued):
            positions.append(ev.position)
            if ev.position == 1:
                await c.cancel(first.id)
        if ev.__class__.__name__ == "JobFinished":
            assert ev.job.reason == "exited"
    assert positions == [2, 1]
    assert (await c.get(second.id)).reason == "cancelled"
    await c.close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


async def wait_for_states(pids: list[int], wanted: set[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(_state(p) in wanted for p in pids):
        assert time.monotonic() < deadline, {p: _state(p) for p in pids}
        await asyncio.sleep(0.01)


async def test_pause_and_resume_stop_the_whole_group(client):
    job = await client.start("sleep 300 & sleep 300 & echo ready; wait", subscribe=True)
    # One iterator throughout: leaving it would stop routing the job's events,
    # and job.finished may arrive right behind the reply to the signal below.
    events = client.events(job.id)
    while not isinstance(await anext(events), OutputChunk):
        pass
    paused = await client.pause(job.id)
    assert paused.state == "paused"
    pids = job_pids(job.id)
    assert len(pids) == 3
    # SIGSTOP takes effect when each process is next scheduled; nothing signals that moment.
    await wait_for_states(pids, {"T"})
    assert (await client.resume(job.id)).state == "running"
    await wait_for_states(pids, {"S", "R"})
    await client.signal(job.id, "SIGTERM")
    async for ev in events:
        pass
    assert job_pids(job.id) == []


async def test_signal_by_name_and_number_and_errors(client):
    job = await client.start(
        "trap 'echo usr2; exit 3' USR2; echo ready; while true; do sleep 0.05; done", subscribe=True
    )
    async for ev in client.events(job.id):
        if isinstance(ev, OutputChunk) and ev.raw() == b"ready\n":
            await client.signal(job.id, "USR2")
        if ev.__class__.__name__ == "JobFinished":
            assert ev.job.exit_code == 3
    for bad in ("NOPE", 999):
        with pytest.raises(RemoteError) as exc:
            await client.signal(job.id, bad)
        assert exc.value.code in (-32602, -32003)
    with pytest.raises(RemoteError) as exc:
        await client.signal("nosuchjob", 9)
    assert exc.value.code == -32001
    with pytest.raises(RemoteError) as exc:
        await client.cancel(job.id)
    assert exc.value.code == -32003


async def test_many_jobs_at_once(client):
    results = await asyncio.gather(*(run_job(client, f"echo {i}") for i in range(50)))
    assert sorted(int(out) for out, _, _, _ in results) == list(range(50))


async def test_without_zsh_jobs_fall_back_to_bash_and_say_so_once(daemon_factory, tmp_root):
    # A PATH that has bash and sh but no zsh.
    bin_dir = tmp_root / "bin"
    bin_dir.mkdir()
    import shutil

    for tool in ("bash", "sh", "redis-server", "ps", "sleep", "cat"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    d = daemon_factory(extra_env={"PATH": str(bin_dir)})
    c = await d.client()
    for _ in range(2):
        out, _, job, _ = await run_job(c, "echo ${BASH_VERSION:+bash}")
        assert out == b"bash\n" and job.shell.endswith("bash")
    await c.close()
    d.stop()
    assert d.log().count("shell zsh not found; using") == 1
