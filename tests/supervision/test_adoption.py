"""A restarted daemon adopts the jobs the previous one left running under their shims.

Real daemons, real redis-server, real zsh: the first daemon is SIGKILLed (or
stopped in ``leave`` mode), a second one starts on the same state directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from ccxd.protocol import JobFinished, JobStarted, OutputChunk, OutputGap, ShutdownParams, ShutdownResult
from ccxd.supervision.shim import find_shim
from tests.conftest import REQUIRE_TOOLS
from tests.helpers import job_pids

# Prints "line N" forever, one line every 20 ms.
COUNTER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done"
LINE = re.compile(rb"line (\d+)\n")


SHIM = {"CCXD_JOB_SHIM": "true"}


@pytest.fixture(autouse=True)
def _need_shim() -> None:
    if find_shim() is None:
        message = "ccxd-shim is not built (python -m ccxd.supervision.shim)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


def assert_counter(out: bytes) -> int:
    """``out`` is "line 0\\n" … "line N\\n": every line once, none missing; return N+1."""
    lines = out.split(b"\n")
    assert lines[-1] == b"", "output ends mid-line"
    numbers = [int(LINE.fullmatch(line + b"\n").group(1)) for line in lines[:-1]]  # type: ignore[union-attr]
    assert numbers == list(range(len(numbers))), "a line is missing or repeated"
    return len(numbers)


async def read_until_lines(client, job_id: str, n: int) -> bytes:
    """Follow a started job until it printed at least ``n`` lines; return those bytes."""
    out = b""
    async for ev in client.events(job_id):
        if isinstance(ev, OutputChunk):
            out += ev.raw()
            if out.count(b"\n") >= n:
                return out
    raise AssertionError("job finished early")


async def follow_to_end(client, job_id: str, from_offset: int) -> tuple[bytes, object, list]:
    out = b""
    gaps = []
    async for ev in client.follow(job_id, from_offset=from_offset):
        if isinstance(ev, OutputChunk):
            assert ev.offset == from_offset + len(out), "output resumed at the wrong offset"
            out += ev.raw()
        elif isinstance(ev, OutputGap):
            gaps.append(ev)
        elif isinstance(ev, JobFinished):
            return out, ev.job, gaps
    raise AssertionError("no job.finished")


def shim_of(job_pid: int) -> psutil.Process:
    return psutil.Process(job_pid).parent()


async def test_sigkilled_daemon_jobs_are_adopted_with_every_byte_once(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    timed = await c.start(COUNTER, timeout=6, subscribe=True)
    to_cancel = await c.start(COUNTER, subscribe=True)
    before = await read_until_lines(c, timed.id, 5)
    await read_until_lines(c, to_cancel.id, 1)
    timed_pid = (await c.get(timed.id)).pid
    await c.close()
    d.stop(signal.SIGKILL)
    killed_at = time.time()

    # No daemon: the jobs run on, their shims keep writing the output to the spool.
    assert job_pids(timed.id) and job_pids(to_cancel.id)
    await asyncio.sleep(2.5)  # the daemon stays down a while: the jobs must not notice
    assert job_pids(timed.id), "the job died with the daemon"

    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    info = await c2.get(timed.id)
    assert info.state == "running" and info.pid == timed_pid
    assert info.output_bytes > len(before)  # what it printed while no daemon ran

    # Cancel works on an adopted job.
    cancelled = await c2.cancel(to_cancel.id)
    assert cancelled.id == to_cancel.id
    whole, done, _ = await follow_to_end(c2, to_cancel.id, 0)
    assert done.reason == "cancelled" and done.signal == signal.SIGTERM
    assert_counter(whole)
    assert job_pids(to_cancel.id) == []

    # Attach resumes where the first daemon's subscriber stopped: no gap, no duplicate.
    after, final, gaps = await follow_to_end(c2, timed.id, len(before))
    assert gaps == []
    lines = assert_counter(before + after)
    assert lines > 5 + 2.5 / 0.1  # lines printed while no daemon ran are there too
    # The timeout fired at the original deadline (started + 6 s), not 6 s after adoption.
    assert final.reason == "timeout" and final.signal == signal.SIGTERM
    assert 6.0 <= final.duration < 6.0 + (time.time() - killed_at) - 2.5
    assert final.stdout_bytes == len(before) + len(after) == final.output_bytes
    # The whole output is in the store too, read back through a fresh daemon.
    page = await c2.read(timed.id, max_bytes=1 << 24)
    assert b"".join(ch.raw() for ch in page.chunks) == before + after and page.eof
    await c2.close()
    assert d2.stop() == 0

    d3 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c3 = await d3.client()
    stored = await c3.get(timed.id)
    assert (stored.reason, stored.stdout_bytes) == ("timeout", len(before) + len(after))
    page = await c3.read(timed.id, max_bytes=1 << 24)
    assert b"".join(ch.raw() for ch in page.chunks) == before + after
    await c3.close()


async def test_exit_status_of_a_job_that_ended_while_no_daemon_ran(daemon_factory, tmp_root):
    go = tmp_root / "go"
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    coded = await c.start(
        f"echo waiting; while [ ! -e {go} ]; do sleep 0.02; done; echo done >&2; exit 7", subscribe=True
    )
    killed = await c.start(
        f"echo waiting; while [ ! -e {go} ]; do sleep 0.02; done; kill -KILL $$", subscribe=True
    )
    await read_until_lines(c, coded.id, 1)
    await read_until_lines(c, killed.id, 1)
    pids = [(await c.get(j.id)).pid for j in (coded, killed)]
    assert None not in pids
    await c.close()
    d.stop(signal.SIGKILL)

    leaders = [psutil.Process(pid) for pid in pids]
    shims = [p.parent() for p in leaders]
    Path(go).touch()
    psutil.wait_procs(leaders + shims, timeout=20)
    assert not any(p.is_running() for p in leaders + shims)

    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    a = await c2.get(coded.id)
    assert (a.state, a.reason, a.exit_code, a.signal) == ("finished", "exited", 7, None)
    assert (a.stdout_bytes, a.stderr_bytes) == (len(b"waiting\n"), len(b"done\n"))
    page = await c2.read(coded.id)
    assert [(ch.stream, ch.raw()) for ch in page.chunks] == [("stdout", b"waiting\n"), ("stderr", b"done\n")]
    b = await c2.get(killed.id)
    assert (b.state, b.reason, b.exit_code, b.signal) == ("finished", "killed", None, signal.SIGKILL)
    # Recorded in history as well, not only in the daemon's memory.
    await c2.close()
    d2.stop()
    d3 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c3 = await d3.client()
    assert (await c3.get(coded.id)).exit_code == 7
    await c3.close()


async def test_graceful_stop_in_leave_mode_then_adoption(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    job = await c.start(COUNTER, subscribe=True)
    before = await read_until_lines(c, job.id, 3)
    assert (await c.pause(job.id)).state == "paused"
    res: ShutdownResult = await c.call("daemon.shutdown", ShutdownParams(mode="leave"))
    assert (res.mode, res.running) == ("leave", 1)
    await c.close()
    assert d.proc is not None and d.proc.wait(30) == 0
    d.stop()
    assert "leaving 1 running jobs" in d.log()
    assert job_pids(job.id)

    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    assert (await c2.get(job.id)).state == "paused"  # still stopped: adopted as paused
    assert (await c2.resume(job.id)).state == "running"
    await c2.cancel(job.id)
    after, final, gaps = await follow_to_end(c2, job.id, len(before))
    assert gaps == [] and final.reason == "cancelled"
    assert_counter(before + after)
    assert job_pids(job.id) == []
    await c2.close()


async def test_sigterm_follows_on_stop_leave(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env={**SHIM, "CCXD_ON_STOP": "leave"})
    c = await d.client()
    job = await c.start(COUNTER, subscribe=True)
    await read_until_lines(c, job.id, 1)
    await c.close()
    assert d.stop() == 0
    assert job_pids(job.id), "on_stop = leave must leave the job running"
    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    await c2.cancel(job.id)
    whole, final, _ = await follow_to_end(c2, job.id, 0)
    assert final.reason == "cancelled"
    assert_counter(whole)
    await c2.close()


async def test_shutdown_cancel_ends_jobs_and_rejects_bad_modes(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    job = await c.start(COUNTER, subscribe=True)
    await read_until_lines(c, job.id, 1)
    from ccxd.client import RemoteError

    with pytest.raises(RemoteError) as bad:
        await c.call("daemon.shutdown", ShutdownParams(mode="later"))  # type: ignore[arg-type]
    assert bad.value.code == -32602 and "$.params.mode" in bad.value.message
    res = await c.call("daemon.shutdown", ShutdownParams())
    assert res.mode == "cancel"
    await c.close()
    assert d.proc is not None and d.proc.wait(30) == 0
    assert job_pids(job.id) == []


async def test_jobs_whose_processes_are_gone_are_still_lost(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    job = await c.start("echo started; sleep 300", subscribe=True)
    await read_until_lines(c, job.id, 1)
    pid = (await c.get(job.id)).pid
    await c.close()
    d.stop(signal.SIGKILL)
    shim = shim_of(pid)
    # Shim and job die together while no daemon runs (say, the machine's OOM killer).
    for p in (shim, psutil.Process(pid)):
        os.kill(p.pid, signal.SIGKILL)
    psutil.wait_procs([shim], timeout=20)

    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    info = await c2.get(job.id)
    assert (info.state, info.reason) == ("finished", "lost")
    page = await c2.read(job.id)
    assert b"".join(ch.raw() for ch in page.chunks) == b"started\n"
    await c2.close()


async def test_silent_jobs_are_adopted(daemon_factory, tmp_root):
    # Jobs that write nothing have no spool files.
    go = tmp_root / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.05; done; exit "
    d = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c = await d.client()
    first = await c.start(wait + "7", timeout=0, subscribe=True)
    second = await c.start(wait + "3", timeout=0, subscribe=True)
    for job in (first, second):
        async for ev in c.events(job.id):
            if isinstance(ev, JobStarted):
                break
    await c.close()
    d.stop(signal.SIGKILL)
    spool = d.state / "ccxd" / "spool"
    assert not list(spool.glob("*.out")) and not list(spool.glob("*.idx"))

    d2 = daemon_factory(root=tmp_root / "d", extra_env=SHIM)
    c2 = await d2.client()
    for job in (first, second):
        assert (await c2.get(job.id)).state == "running"
    go.touch()
    for job, code in ((first, 7), (second, 3)):
        out, final, gaps = await follow_to_end(c2, job.id, 0)
        assert out == b"" and gaps == []
        assert final.reason == "exited" and final.exit_code == code
    await c2.close()


LIMIT_AND_NOTE = """
from ccxd.hooks import HookResult

async def limit(ctx):
    return HookResult(update={"memory": "64M"}, annotations={"pre": "first daemon"})

async def seen(ctx):
    return HookResult.annotate(memory_seen=ctx.params.get("memory"), tags_seen=ctx.tags)

HOOKS = {"pre_execution": [limit], "post_execution": [seen]}
"""


def memory_limit_of(pid: int) -> int:
    """The memory limit the kernel enforces on ``pid`` (its cgroup v2 or v1 memory group)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        num, controllers, path = line.split(":", 2)
        if num == "0" and Path(f"/sys/fs/cgroup{path}/memory.max").exists():
            return int(Path(f"/sys/fs/cgroup{path}/memory.max").read_text())
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
    raise AssertionError("no memory cgroup")


async def test_a_shell_job_with_limits_keeps_them_its_deadline_and_its_hooks(daemon_factory, tmp_root):
    hooks = tmp_root / "hooks"
    hooks.mkdir()
    (hooks / "limits.py").write_text(LIMIT_AND_NOTE)
    env = {**SHIM, "CCXD_HOOKS_DIR": str(hooks)}
    d = daemon_factory(root=tmp_root / "d", extra_env=env)
    c = await d.client()
    job = await c.start(COUNTER, timeout=8, tags=["adopt"], subscribe=True)
    before = await read_until_lines(c, job.id, 3)
    first = await c.get(job.id)
    assert first.limits is not None and first.limits.memory == 64 << 20
    enforced = memory_limit_of(first.pid)
    assert enforced == 64 << 20
    await c.close()
    d.stop(signal.SIGKILL)

    d2 = daemon_factory(root=tmp_root / "d", extra_env=env)
    c2 = await d2.client()
    adopted = await c2.get(job.id)
    assert adopted.state == "running" and adopted.pid == first.pid
    assert (adopted.limits, adopted.cgroup, adopted.timeout) == (first.limits, first.cgroup, 8)
    assert memory_limit_of(adopted.pid) == enforced
    after, final, _ = await follow_to_end(c2, job.id, len(before))
    assert_counter(before + after)
    # The deadline of its start (8 s), not 8 s after the adoption.
    assert final.reason == "timeout" and 8.0 <= final.duration < 8.0 + 3.0
    # The pre hook's outcome (first daemon) and the post hook's (second) are both on the record,
    # and the post hook saw the job's whole request.
    assert [(h.point, h.result) for h in final.hooks] == [
        ("pre_execution", "changed"),
        ("post_execution", "annotated"),
    ]
    assert final.annotations == {"pre": "first daemon", "memory_seen": "64M", "tags_seen": ["adopt"]}
    assert final.limits == first.limits and final.cgroup == first.cgroup
    await c2.close()
