"""An estimated timeout guards against hangs and never kills a job that still talks (issue 18.4).

A real daemon, real zsh: five quick runs teach the daemon a command shape; then a
run of that shape that takes far longer than the estimate but prints now and
then must succeed, a silent one must be ended once it is past the floor and
silent, and an explicit ``timeout`` still ends a printing job at its time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from ccxd.protocol import JobFinished, JobStarted, OutputChunk
from ccxd.supervision.shim import find_shim
from tests.conftest import REQUIRE_TOOLS, require_tool
from tests.helpers import run_job

# One command signature: "for i in {<n>..<n>}; do echo tick $i; sleep <n>; done".
SHAPE = "for i in {{1..{n}}}; do echo tick $i; sleep {pause}; done"
FLOOR, SILENCE = 2.0, 1.5
GUARD_ENV = {
    "CCXD_SHELL": "zsh",
    "CCXD_ESTIMATE_MIN": "0.1",  # the estimate of the quick runs is about 0.1 s
    "CCXD_ESTIMATE_FLOOR": str(FLOOR),
    "CCXD_ESTIMATE_SILENCE": str(SILENCE),
    "CCXD_KILL_GRACE": "1",
}


def ccxctl(daemon, *args: str) -> str:
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    res = subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=60, check=True
    )
    return res.stdout.decode()


async def learn_the_shape(client) -> None:
    for _ in range(5):
        _, _, quick, _ = await run_job(client, SHAPE.format(n=1, pause=0.01))
        assert quick.reason == "exited" and quick.exit_code == 0


async def test_an_estimate_ends_a_silent_job_and_never_a_talking_one(daemon_factory):
    require_tool("zsh")
    d = daemon_factory(extra_env=GUARD_ENV)
    c = await d.client()
    await learn_the_shape(c)
    # ccxctl run says why; and a hang ended by a guard does not lengthen the next estimates
    # (it is no "ran at least this long" like a run a deadline cut short).
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    argv = [sys.executable, "-m", "ccxctl", "run", SHAPE.format(n=1, pause=60)]
    run = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert run.returncode == 124 and run.stdout == b"tick 1\n"
    assert b"stopped: timeout: no output for 2s, 2s after the start" in run.stderr

    # Started together, so all three see the same five runs.
    talking, silent, explicit = await asyncio.gather(
        run_job(c, SHAPE.format(n=15, pause=0.3)),  # 4.5 s, a line every 0.3 s
        run_job(c, SHAPE.format(n=1, pause=60)),  # one line, then hangs
        run_job(c, SHAPE.format(n=100, pause=0.1), timeout=1.5),  # prints, but has a deadline
    )

    out, _, job, events = talking
    started = next(e for e in events if isinstance(e, JobStarted))
    assert (started.timeout, started.timeout_silence) == (FLOOR, SILENCE)
    # The estimate itself (estimate_min or 3 × p95, by how fast the five runs were) is below the floor.
    assert started.timeout_basis.startswith("estimate_floor (estimate ") and "3 × p95" in started.timeout_basis
    assert job.reason == "exited" and job.exit_code == 0, job
    assert out.decode().splitlines() == [f"tick {i}" for i in range(1, 16)]
    assert job.duration > FLOOR + SILENCE  # far past its estimate, and it lived

    out, _, job, _ = silent
    assert out == b"tick 1\n"
    assert job.reason == "timeout" and job.timeout_silence == SILENCE
    assert job.error.startswith("no output for 2s, 2s after the start (estimated timeout: ")
    assert FLOOR <= job.duration < FLOOR + 2.0  # at the floor: it had been silent long enough

    out, _, job, _ = explicit
    assert job.reason == "timeout" and job.timeout_basis == "explicit" and job.timeout_silence is None
    assert job.error is None and out.startswith(b"tick 1\ntick 2\n")
    assert 1.5 <= job.duration < 2.5  # at its time, though it was printing

    # What a user sees: which rule each job had, and why the silent one ended.
    listed = ccxctl(d, "ps", "--all").splitlines()
    assert listed[0].split("\t")[:6] == ["id", "state", "outcome", "started", "duration", "limit"]
    limits = {row.split("\t")[-1]: row.split("\t")[5] for row in listed[1:]}
    assert limits[SHAPE.format(n=15, pause=0.3)] == "silent 1.5s after 2s"
    assert limits[SHAPE.format(n=100, pause=0.1)] == "1.5s"
    shown = ccxctl(d, "history", "show", silent[2].id)
    # The estimate's own figure depends on how fast the five runs were (see above).
    assert "timeout:  2s, then only after 1.5s without output (estimate_floor (estimate " in shown
    assert "error:    no output for 2s, 2s after the start" in shown
    record = json.loads(ccxctl(d, "history", "show", silent[2].id, "--json"))["job"]
    assert (record["reason"], record["timeout"], record["timeout_silence"]) == ("timeout", FLOOR, SILENCE)
    await c.close()


async def test_an_adopted_job_keeps_its_guard_from_its_original_start(daemon_factory, tmp_root):
    require_tool("zsh")
    if find_shim() is None:
        if REQUIRE_TOOLS:
            pytest.fail("ccxd-shim is not built (python -m ccxd.supervision.shim)")
        pytest.skip("ccxd-shim is not built")
    env = dict(GUARD_ENV, CCXD_JOB_SHIM="true")
    d = daemon_factory(root=tmp_root / "d", extra_env=env)
    c = await d.client()
    await learn_the_shape(c)
    talking = await c.start(SHAPE.format(n=20, pause=0.3), subscribe=True)  # 6 s, a line every 0.3 s
    silent = await c.start(SHAPE.format(n=1, pause=60), subscribe=True)
    for job in (talking, silent):
        async for ev in c.events(job.id):
            if isinstance(ev, OutputChunk):
                break
    await c.close()
    d.stop(signal.SIGKILL)  # the jobs run on under their shims; the next daemon adopts them

    d2 = daemon_factory(root=tmp_root / "d", extra_env=env)
    c2 = await d2.client()
    ends = {}
    for job in (talking, silent):
        async for ev in c2.follow(job.id):
            if isinstance(ev, JobFinished):
                ends[job.id] = ev.job
    done, hung = ends[talking.id], ends[silent.id]
    assert done.reason == "exited" and done.exit_code == 0, done  # the guard came along, not a deadline
    assert done.stdout_bytes == sum(len(f"tick {i}\n") for i in range(1, 21))
    assert hung.reason == "timeout" and hung.timeout_silence == SILENCE
    assert hung.error.startswith("no output for ") and hung.duration >= FLOOR
    await c2.close()
