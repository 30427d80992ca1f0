"""cgroup v2 paths that need no controllers: grouping, cgroup.kill, cpu.stat, unenforced limits.

On this kind of hybrid host the unified mount has no controllers (they are
bound to v1), so limits are reported as unenforced; full v2 limits with
delegation are checked inside a real systemd (the service tests).
"""

from __future__ import annotations

import os
import sys

import pytest

from ccxd.cgroups.v2 import V2Backend
from ccxd.protocol import Limits
from tests.helpers import run_job

from .conftest import need_v2
from .test_v1 import ESCAPE, alive

PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def v2_daemon(daemon_factory):
    need_v2()
    return daemon_factory(
        extra_env={"CCXD_CGROUP_BACKEND": "v2", "CCXD_STORE": "memory", "CCXD_KILL_GRACE": "0.5"}
    )


def controllers(backend_line: str) -> str:
    return backend_line.split("(limits: ", 1)[1]


async def test_jobs_get_their_own_v2_group_with_cpu_accounting(v2_daemon):
    c = await v2_daemon.client()
    st = await c.status()
    assert st.cgroups.startswith("v2 ")
    busy = "import time\nwhile time.process_time() < 0.2: pass\nprint(open('/proc/self/cgroup').read())"
    out, _, job, _ = await run_job(c, [PYTHON, "-c", busy], memory="64M")
    v2_path = next(line for line in out.decode().splitlines() if line.startswith("0::"))[3:]
    assert v2_path.endswith(f"/job-{job.id}")
    assert job.cgroup is not None and job.cgroup.endswith(v2_path)
    assert job.usage is not None and job.usage.cpu_seconds >= 0.2  # from cpu.stat usage_usec
    if "memory" in controllers(st.cgroups):
        assert job.limits_unenforced == []
    else:
        assert job.limits_unenforced == ["memory"]
    assert not os.path.exists(job.cgroup)
    await c.close()


async def test_cgroup_kill_takes_daemonised_grandchildren(v2_daemon, tmp_root):
    c = await v2_daemon.client()
    pidfile = tmp_root / "escapee.pid"
    out, _, job, _ = await run_job(c, ESCAPE.format(pidfile=pidfile))
    assert out == b"escaped\n" and job.reason == "exited"
    assert not alive(int(pidfile.read_text()))
    await c.close()


async def test_backend_api_for_other_spawners(tmp_root):
    """create → attach → pids/sample → kill → remove, as a shim that outlives the daemon would use it."""
    need_v2()
    import subprocess

    from ccxd.cgroups.detect import instance_name
    from ccxd.cgroups.mounts import parse_mountinfo, parse_proc_cgroup

    with open("/proc/self/mountinfo") as f:
        mount = next(h.mount for h in parse_mountinfo(f.read()) if h.version == 2)
    with open("/proc/self/cgroup") as f:
        own, _ = parse_proc_cgroup(f.read())
    assert own is not None
    backend = V2Backend(mount, own, instance_name(str(tmp_root)), move_self=False)
    group = backend.create("apitest", Limits())
    try:
        proc = subprocess.Popen(["sleep", "300"])
        group.attach(proc.pid)
        assert group.pids() == [proc.pid]
        assert backend.leftovers() == ["apitest"]
        assert group.sample().pids >= 1
        await group.kill()
        assert proc.wait(10) == -9
        assert group.pids() == []
    finally:
        assert group.remove()
        backend.close()
    assert backend.leftovers() == []
