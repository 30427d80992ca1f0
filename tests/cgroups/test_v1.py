"""cgroup v1 through a real daemon: memory → oom, pids → fork fails, CPU quota, whole-group kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ccxd.protocol import JobFinished, OutputChunk
from tests.conftest import remove_empty_groups
from tests.helpers import run_job

from .conftest import need_v1, v1_mount

# The interpreter itself, not a launcher script that forks (pyenv shims do).
PYTHON = os.path.realpath(sys.executable)

# A daemonised grandchild that no tree heuristic finds: it leaves the session,
# is re-parented, and clears its environment (no CCXD_JOB_ID).  Only its cgroup
# still knows it belongs to the job.
ESCAPE = (
    "env -i python3 -c 'import os,signal,time\n"
    "if os.fork(): os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): os._exit(0)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    'open("{pidfile}","w").write(str(os.getpid()))\n'
    "time.sleep(300)'; "
    "while [ ! -s {pidfile} ]; do sleep 0.02; done; echo escaped"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture(params=["shim", "direct"])
def v1_daemon(request, daemon_factory):
    """A daemon on the v1 backend, with jobs under ccxd-shim (the default) or as its own children."""
    need_v1()
    shim = "true" if request.param == "shim" else "false"
    return daemon_factory(
        extra_env={
            "CCXD_CGROUP_BACKEND": "v1",
            "CCXD_STORE": "memory",
            "CCXD_KILL_GRACE": "0.5",
            "CCXD_JOB_SHIM": shim,
        }
    )


async def test_status_names_the_v1_backend_and_groups_are_removed(v1_daemon):
    c = await v1_daemon.client()
    st = await c.status()
    assert st.cgroups.startswith("v1 ") and "memory" in st.cgroups
    out, _, job, _ = await run_job(c, "cat /proc/self/cgroup")
    # The command itself already ran inside the job's groups (joined before exec).
    lines = dict(line.split(":", 2)[1:] for line in out.decode().splitlines())
    # A job without limits runs in a pool group, which its record names.
    assert job.cgroup is not None and os.path.basename(job.cgroup).startswith("pool-")
    where = "/".join(job.cgroup.split("/")[-2:])  # ccxd-<instance>/pool-<n>
    for ctrl in ("memory", "pids", "freezer", "cpuacct", "blkio"):
        assert lines[ctrl].endswith("/" + where), (ctrl, lines)
    # The cpu hierarchy only enforces quotas: a job without one stays in the daemon's group.
    assert "pool-" not in lines["cpu"]
    # One with limits gets a group named after it, removed once empty.
    out, _, limited, _ = await run_job(c, "cat /proc/self/cgroup", pids=100)
    lines = dict(line.split(":", 2)[1:] for line in out.decode().splitlines())
    assert lines["pids"].endswith(f"/job-{limited.id}")
    assert limited.cgroup is not None and limited.cgroup.endswith(f"/job-{limited.id}")
    assert not os.path.exists(limited.cgroup)
    parent = os.path.dirname(job.cgroup)
    await c.close()
    v1_daemon.stop()
    assert not os.path.exists(parent)  # free groups too: nothing of ours is left


def pool_groups(parent: str) -> list[str]:
    return sorted(n for n in os.listdir(parent) if n.startswith("pool-"))


async def test_a_recycled_group_reports_only_its_new_jobs_usage(v1_daemon):
    c = await v1_daemon.client()
    # About 80 MiB and a few tenths of a second of CPU, then nothing left charged.
    busy = "a=( {1..1000000} ); i=0; while (( i < 300000 )); do (( i++ )); done"
    _, _, first, _ = await run_job(c, busy)
    assert first.usage is not None and first.usage.cpu_seconds > 0.1
    assert first.usage.memory_peak > 40 << 20
    assert first.cgroup is not None
    parent = os.path.dirname(first.cgroup)
    assert pool_groups(parent) == [os.path.basename(first.cgroup)]  # kept, reset, for the next job
    out, _, second, _ = await run_job(c, "cat /proc/self/cgroup")
    # The next job runs in that group, and sees only its own usage.
    lines = dict(line.split(":", 2)[1:] for line in out.decode().splitlines())
    assert second.cgroup == first.cgroup
    assert lines["memory"].endswith("/" + os.path.basename(first.cgroup))
    assert second.usage is not None
    assert second.usage.cpu_seconds < first.usage.cpu_seconds / 2
    assert second.usage.memory_peak < first.usage.memory_peak / 4
    assert pool_groups(parent) == [os.path.basename(first.cgroup)]
    assert sorted(n for n in os.listdir(parent) if n.startswith("job-")) == []
    await c.close()


async def test_a_group_with_limits_is_removed_not_recycled(v1_daemon):
    c = await v1_daemon.client()
    _, _, job, _ = await run_job(c, "true", memory="256M")
    assert job.cgroup is not None and job.limits is not None
    assert not os.path.exists(job.cgroup)
    assert pool_groups(os.path.dirname(job.cgroup)) == []
    await c.close()


async def test_memory_limit_ends_in_oom_with_the_limit(v1_daemon):
    c = await v1_daemon.client()
    _, _, job, _ = await run_job(
        c, [PYTHON, "-c", "x = bytearray(400 << 20); print('survived')"], memory="64M"
    )
    assert job.reason == "oom"
    assert job.limits is not None and job.limits.memory == 64 << 20
    assert job.error is not None and "64.0M" in job.error
    assert job.usage is not None and job.usage.memory_peak >= 60 << 20
    await c.close()


async def test_pids_limit_makes_fork_fail(v1_daemon):
    c = await v1_daemon.client()
    code = (
        "import os, time\n"
        "ok = failed = 0\n"
        "for _ in range(10):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        ok += 1\n"
        "    except BlockingIOError:\n"
        "        failed += 1\n"
        "print(ok, failed)\n"
    )
    out, _, job, _ = await run_job(c, [PYTHON, "-c", code], pids=4)
    # python itself is one of the 4: three children fit, seven forks fail with EAGAIN.
    assert out == b"3 7\n" and job.reason == "exited"
    await c.close()


async def test_cpu_quota_throttles(v1_daemon):
    c = await v1_daemon.client()
    busy = [PYTHON, "-c", "import time\nwhile time.process_time() < 0.1: pass"]
    _, _, limited, _ = await run_job(c, busy, cpus=0.05)
    _, _, free, _ = await run_job(c, busy)
    assert limited.usage is not None and free.usage is not None
    assert limited.usage.cpu_seconds >= 0.1
    assert limited.usage.cpu_throttled is not None and limited.usage.cpu_throttled > 0
    assert free.usage.cpu_throttled == 0
    await c.close()


async def test_daemonised_grandchild_dies_with_the_job(v1_daemon, tmp_root):
    c = await v1_daemon.client()
    pidfile = tmp_root / "escapee.pid"
    out, _, job, _ = await run_job(c, ESCAPE.format(pidfile=pidfile))
    assert out == b"escaped\n" and job.reason == "exited"
    escapee = int(pidfile.read_text())
    assert not alive(escapee)
    await c.close()


async def test_cancel_kills_a_job_that_forks_as_fast_as_it_can(v1_daemon):
    c = await v1_daemon.client()
    job = await c.start("echo go; while :; do (sleep 100 &); done", subscribe=True, pids=64)
    final = None
    async for ev in c.events(job.id):
        if isinstance(ev, OutputChunk):
            await c.cancel(job.id)
        elif isinstance(ev, JobFinished):
            final = ev.job
    assert final is not None and final.reason == "cancelled"
    assert final.cgroup is not None and not os.path.exists(final.cgroup)
    await c.close()


async def crash_under_an_escapee(daemon_factory, env, tmp_root, **options):  # type: ignore[no-untyped-def]
    """A daemon on ``tmp_root/d`` SIGKILLed while its job runs with an escaped grandchild.

    Returns the job's record from before the crash and the escapee's pid.
    """
    first = daemon_factory(extra_env=env, root=tmp_root / "d")
    c = await first.client()
    pidfile = tmp_root / "escapee.pid"
    job = await c.start(ESCAPE.format(pidfile=pidfile) + "; sleep 300", subscribe=True, **options)
    async for ev in c.events(job.id):
        if isinstance(ev, OutputChunk):
            break
    info = await c.get(job.id)
    await c.close()
    first.stop(signal.SIGKILL)
    return info, int(pidfile.read_text())


async def cancel_to_end(c, job_id: str):  # type: ignore[no-untyped-def]
    """Cancel a job and follow it to its end; its final record, ended as cancelled."""
    await c.cancel(job_id)
    final = None
    async for ev in c.follow(job_id):
        if isinstance(ev, JobFinished):
            final = ev.job
    assert final is not None and final.reason == "cancelled"
    return final


async def test_leftover_groups_of_a_crashed_daemon_are_cleaned_on_start(daemon_factory, tmp_root):
    need_v1()
    # Without the shim a crashed daemon's jobs cannot be adopted: their groups are leftovers.
    env = {"CCXD_CGROUP_BACKEND": "v1", "CCXD_STORE": "memory", "CCXD_JOB_SHIM": "false"}
    info, escapee = await crash_under_an_escapee(daemon_factory, env, tmp_root, pids=50)
    assert info.cgroup is not None and info.cgroup.endswith(f"/job-{info.id}")
    assert os.path.isdir(info.cgroup) and alive(escapee)

    second = daemon_factory(extra_env=env, root=tmp_root / "d")  # same socket: same groups
    assert not os.path.exists(info.cgroup)
    assert not alive(escapee)
    assert "killing processes left in its cgroup" in second.log()


async def test_a_crashed_daemons_pool_groups_are_cleaned_on_start(daemon_factory, tmp_root):
    need_v1()
    # A job without limits runs in a pool group, not named after it: found all the same.
    env = {"CCXD_CGROUP_BACKEND": "v1", "CCXD_STORE": "memory", "CCXD_JOB_SHIM": "false"}
    info, escapee = await crash_under_an_escapee(daemon_factory, env, tmp_root)
    assert info.cgroup is not None and os.path.basename(info.cgroup).startswith("pool-")
    assert os.path.isdir(info.cgroup) and alive(escapee)

    second = daemon_factory(extra_env=env, root=tmp_root / "d")
    assert not os.path.exists(info.cgroup)
    assert not alive(escapee)
    assert f"killing processes left in cgroup {info.cgroup}" in second.log()
    # New pool groups are numbered past what the crashed daemon left.
    c = await second.client()
    _, _, job, _ = await run_job(c, "true")
    assert job.cgroup is not None and job.cgroup != info.cgroup
    await c.close()


async def test_an_adopted_job_in_a_pool_group_keeps_it(daemon_factory, tmp_root):
    need_v1()
    env = {"CCXD_CGROUP_BACKEND": "v1", "CCXD_STORE": "memory", "CCXD_KILL_GRACE": "0.5"}
    info, escapee = await crash_under_an_escapee(daemon_factory, env, tmp_root)
    assert info.cgroup is not None and os.path.basename(info.cgroup).startswith("pool-")

    second = daemon_factory(extra_env=env, root=tmp_root / "d")
    # Adopted through the group its record names: the group and the escapee stay.
    assert os.path.isdir(info.cgroup) and alive(escapee)
    assert "killing processes left" not in second.log()
    c = await second.client()
    # A new job does not get the adopted job's group.
    _, _, other, _ = await run_job(c, "true")
    assert other.cgroup is not None and other.cgroup != info.cgroup
    adopted = await c.get(info.id)
    assert adopted.state == "running" and adopted.cgroup == info.cgroup
    # Only the cgroup knows the escapee belongs to the job; cancel still ends it.
    final = await cancel_to_end(c, info.id)
    assert final.usage is not None and final.usage.memory_peak > 0
    assert not alive(escapee)
    await c.close()
    second.stop()
    assert not os.path.exists(os.path.dirname(info.cgroup))


async def test_an_adopted_job_keeps_its_group_limits_and_whole_group_cancel(daemon_factory, tmp_root):
    need_v1()
    env = {"CCXD_CGROUP_BACKEND": "v1", "CCXD_STORE": "memory", "CCXD_KILL_GRACE": "0.5"}
    info, escapee = await crash_under_an_escapee(daemon_factory, env, tmp_root, pids=20)
    assert info.cgroup is not None and alive(escapee)

    second = daemon_factory(extra_env=env, root=tmp_root / "d")
    # Adopted, not a leftover: the group, its limit and the escaped grandchild stay.
    assert os.path.isdir(info.cgroup) and alive(escapee)
    assert "killing processes left in its cgroup" not in second.log()
    memory_mount, pids_mount = v1_mount("memory"), v1_mount("pids")
    assert memory_mount is not None and pids_mount is not None
    pids_dir = pids_mount + info.cgroup[len(memory_mount) :]
    with open(f"{pids_dir}/pids.max") as f:
        assert f.read().strip() == "20"
    c = await second.client()
    adopted = await c.get(info.id)
    assert adopted.state == "running" and adopted.cgroup == info.cgroup
    assert adopted.limits is not None and adopted.limits.pids == 20
    # Only the cgroup knows the escapee belongs to the job; cancel still ends it.
    await cancel_to_end(c, info.id)
    assert not alive(escapee)
    assert not os.path.exists(info.cgroup)
    await c.close()


async def test_a_backend_that_fails_mid_way_falls_back_with_one_log_line(v1_daemon):
    c = await v1_daemon.client()
    _, _, first, _ = await run_job(c, "true")
    assert first.cgroup is not None
    # Someone removes ccxd's parent group while the daemon runs (no job is in it).
    parent = os.path.dirname(first.cgroup)
    for name in pool_groups(parent):
        os.rmdir(os.path.join(parent, name))
    os.rmdir(parent)
    for limit in (None, "64M"):  # the free group kept for reuse is gone too
        out, _, job, _ = await run_job(c, "echo still runs", memory=limit)
        assert out == b"still runs\n" and job.reason == "exited" and job.cgroup is None
    st = await c.status()
    assert st.cgroups.startswith("none") and "v1 failed" in st.cgroups
    assert v1_daemon.log().count("falling back to the none backend") == 1
    await c.close()


async def test_limits_and_peaks_are_kept_in_history(daemon_factory, tmp_root):
    need_v1()
    from tests.conftest import require_tool

    require_tool("redis-server")
    env = {"CCXD_CGROUP_BACKEND": "v1"}
    first = daemon_factory(extra_env=env, root=tmp_root / "h")
    c = await first.client()
    _, _, job, _ = await run_job(c, [PYTHON, "-c", "x = bytearray(20 << 20)"], memory="256M")
    await c.close()
    first.stop()
    second = daemon_factory(extra_env=env, root=tmp_root / "h")
    c = await second.client()
    stored = await c.get(job.id)  # from Redis: the new daemon never ran it
    assert stored.limits is not None and stored.limits.memory == 256 << 20
    assert stored.usage is not None and stored.usage.memory_peak >= 20 << 20
    assert stored.usage.cpu_seconds > 0
    await c.close()


async def test_a_finished_jobs_group_cannot_reach_the_next_job_in_its_pool_group(tmp_root):
    need_v1()
    from ccxd.cgroups.detect import make_backend
    from ccxd.protocol import Limits

    backend = make_backend("v1", f"test-{os.getpid()}")
    first = backend.create("a", Limits())
    assert first.remove()  # empty, no limits: back to the pool
    second = backend.create("b", Limits())
    assert second.path == first.path  # the next job runs in the same directories
    proc = subprocess.Popen(["sleep", "300"])
    try:
        second.attach(proc.pid)
        # A stop of the finished job still under way (its grace period over) finds
        # nothing to signal in the group it had.
        assert first.pids() == []
        await first.kill()
        assert proc.poll() is None
        assert second.pids() == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
        await second.kill()
        second.remove()
        backend.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _close_all(backend) -> None:
    """Close a test's backend and remove every group it left (a failed assertion leaves some)."""
    backend.close()
    for parent in set(backend.parents.values()):
        remove_empty_groups(parent)


async def test_pool_groups_report_each_jobs_own_usage_and_an_idle_backend_holds_no_files(tmp_root):
    # While jobs run, the counter files a pool group's final sample and reset use stay
    # open from one job to the next; a running job's samples open none of their own,
    # and once the daemon finds no job running (a second after the last ended), none is open.
    need_v1()
    from ccxd.cgroups.detect import make_backend
    from ccxd.protocol import Limits

    backend = make_backend("v1", f"test-{os.getpid()}")
    baseline = _fds()
    other = backend.create("long", Limits())  # a job that keeps running meanwhile
    paths = set()
    try:
        other.sample()
        assert _fds() == baseline  # a running job's periodic samples hold no files open
        for i in range(3):
            group = backend.create(f"j{i}", Limits())
            burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
            proc = subprocess.Popen([PYTHON, "-c", f"import os\nos.read(0, 1)\n{burn}"], stdin=subprocess.PIPE)
            try:
                group.attach(proc.pid)
                proc.communicate(b"x", timeout=30)
            finally:
                proc.kill()
            group.ended = True  # as the verdict does: the job ended, then its final sample
            sample = group.sample()
            assert 0.15 < sample.cpu_seconds < 0.4, f"job {i}: {sample.cpu_seconds} s (usage not reset?)"
            assert group.oom_kills() == 0
            assert group.remove()  # back to the pool: the next job gets the same directories
            paths.add(group.path)
            assert _fds() > baseline  # its files stay open while the other job runs
            backend.close_idle()
            assert _fds() > baseline  # a job runs: the backend is not idle
        assert other.remove()
        assert len(paths) == 1
        assert _fds() > baseline  # kept for the next wave of jobs ...
        backend.close_idle()
        assert _fds() == baseline  # ... until the daemon finds it idle
    finally:
        _close_all(backend)


async def test_a_pool_group_removed_only_on_a_second_try_leaves_no_file_open(tmp_root):
    # A job's group still holding a process is not recycled, and its removal fails
    # until the process is gone; the retry must not keep counter files open.
    need_v1()
    from ccxd.cgroups.detect import make_backend
    from ccxd.protocol import Limits

    backend = make_backend("v1", f"test-{os.getpid()}")
    baseline = _fds()
    group = backend.create("a", Limits())
    proc = subprocess.Popen(["sleep", "300"])
    try:
        group.attach(proc.pid)
        group.ended = True
        group.sample()
        assert not group.remove()  # a process is still in it
        proc.kill()
        proc.wait()
        await group.kill()
        assert group.remove()
        assert _fds() == baseline  # at once, not only when idle
    finally:
        proc.kill()
        proc.wait()
        _close_all(backend)
