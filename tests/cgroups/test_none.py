"""The none backend: process-tree sampling, memory enforced by sampling, the rest unenforced."""

from __future__ import annotations

import os
import sys

from tests.helpers import run_job

PYTHON = os.path.realpath(sys.executable)


async def test_none_backend_samples_and_enforces_memory_by_sampling(daemon_factory):
    d = daemon_factory(
        extra_env={"CCXD_CGROUP_BACKEND": "none", "CCXD_STORE": "memory", "CCXD_STATS_INTERVAL": "0.2"}
    )
    c = await d.client()
    st = await c.status()
    assert st.cgroups.startswith("none")
    hog = "import time\nx = bytearray(300 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(60)"
    _, _, job, _ = await run_job(c, [PYTHON, "-c", hog], memory="64M", cpus=1)
    assert job.reason == "oom" and "64.0M" in (job.error or "")
    assert job.limits_unenforced == ["cpus"]
    assert job.cgroup is None
    assert job.usage is not None and job.usage.memory_peak > 64 << 20
    _, _, free, _ = await run_job(c, "echo fine")
    assert free.reason == "exited"
    await c.close()
