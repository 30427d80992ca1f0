"""Queue groups, priorities, dependencies and `ccxctl wait`, on a real daemon with real zsh jobs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccxd.client import RemoteError
from ccxd.protocol import EmptyParams, GroupInfo, GroupList, GroupSetParams, JobInfo


def ccxctl(daemon, *args: str, fast: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ccxctl; ``fast=False`` puts the global option first, which forces the typer path."""
    argv = [sys.executable, "-m", "ccxctl"] + ([] if fast else ["--socket", str(daemon.socket)])
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=timeout)


def with_config(daemon_factory, text: str, **env: str):  # type: ignore[no-untyped-def]
    d = daemon_factory(extra_env=env, start=False)
    (d.config_home / "ccxd").mkdir(mode=0o700, exist_ok=True)
    (d.config_home / "ccxd" / "config.toml").write_text(text)
    return d.start()


def until_file(path: Path, code: int = 0) -> str:
    """A job that waits until ``path`` exists (the test's release), then exits ``code``."""
    return f"until [[ -e {path} ]]; do sleep 0.02; done; exit {code}"


async def ended(c, *ids: str) -> list[JobInfo]:  # type: ignore[no-untyped-def]
    return list(await asyncio.gather(*(c.wait(i) for i in ids)))


async def test_a_group_of_one_runs_its_jobs_one_at_a_time_while_another_runs_them_together(
    daemon_factory, tmp_root
):
    d = with_config(daemon_factory, "[groups.serial]\nparallel = 1\n")
    c = await d.client()
    serial = [await c.start("sleep 0.2; echo s", group="serial") for _ in range(3)]
    assert [j.state for j in serial[1:]] == ["queued", "queued"]
    assert serial[1].wait_reason == "group serial full (1/1)"
    # Three jobs of an unlimited group each wait until all three run: serialised, they would never end.
    marks = tmp_root / "marks"
    marks.mkdir()
    together = f"touch {marks}/$CCXD_JOB_ID; until (( $(ls {marks} | wc -l) >= 3 )); do sleep 0.02; done"
    wide = [await c.start(together, group="wide", timeout=30) for _ in range(3)]
    groups = {g.name: g for g in (await c.call("group.list", EmptyParams())).groups}
    assert (groups["serial"].parallel, groups["serial"].source) == (1, "config")
    assert groups["serial"].running + groups["serial"].queued == 3
    done = await ended(c, *(j.id for j in serial + wide))
    assert all((j.reason, j.exit_code) == ("exited", 0) for j in done)
    runs = sorted((j.started_at, j.finished_at) for j in done[:3])
    assert all(runs[i][1] <= runs[i + 1][0] for i in range(2)), runs
    await c.close()


async def test_a_paused_group_holds_queued_jobs_until_resumed_and_ps_says_so(daemon):
    res = ccxctl(daemon, "group", "pause", "nightly")
    assert res.returncode == 0 and "paused" in res.stdout
    res = ccxctl(daemon, "run", "-d", "--group", "nightly", "echo ran")
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    ps = ccxctl(daemon, "ps")
    line = next(row for row in ps.stdout.splitlines() if row.startswith(job_id))
    assert "queued" in line and "group nightly paused" in line
    listed = json.loads(ccxctl(daemon, "group", "list", "--json").stdout)["groups"]
    nightly = next(g for g in listed if g["name"] == "nightly")
    assert (nightly["paused"], nightly["queued"], nightly["running"]) == (True, 1, 0)
    assert ccxctl(daemon, "group", "resume", "nightly", fast=False).returncode == 0
    waited = ccxctl(daemon, "wait", job_id)
    assert waited.returncode == 0 and waited.stdout == f"{job_id}\texit 0\n"


async def test_raising_a_groups_limit_starts_its_queued_job_at_once(daemon_factory, tmp_root):
    d = with_config(daemon_factory, "[groups.serial]\nparallel = 1\n")
    c = await d.client()
    release = tmp_root / "go"
    first = await c.start(until_file(release), group="serial", timeout=60)
    second = await c.start("echo second", group="serial")
    assert (second.state, second.wait_reason) == ("queued", "group serial full (1/1)")
    res = ccxctl(d, "group", "set", "serial", "--parallel", "2")
    assert res.returncode == 0 and "runtime" in res.stdout
    done = await asyncio.wait_for(c.wait(second.id), 30)  # while the first still runs
    assert (done.reason, done.exit_code) == ("exited", 0)
    assert (await c.get(first.id)).state == "running"
    release.touch()
    await c.wait(first.id)
    await c.close()


async def test_runtime_limit_and_the_claude_group_in_group_list(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_CLAUDE_MAX_CONCURRENT": "3"})
    c = await d.client()
    groups: GroupList = await c.call("group.list", EmptyParams())
    claude = next(g for g in groups.groups if g.name == "claude")
    assert (claude.parallel, claude.source) == (3, "implicit")
    info: GroupInfo = await c.call("group.set", GroupSetParams(name="build", parallel=2))
    assert (info.parallel, info.source) == (2, "runtime")
    with pytest.raises(RemoteError) as bad:
        await c.call("group.set", GroupSetParams(name="no spaces"))
    assert bad.value.code == -32602
    await c.close()


async def test_queued_jobs_start_by_priority_then_age(daemon_factory, tmp_root):
    d = daemon_factory(extra_env={"CCXD_MAX_CONCURRENT_JOBS": "1"})
    c = await d.client()
    release = tmp_root / "go"
    blocker = await c.start(until_file(release), timeout=30)
    low = await c.start("true", priority="low")
    normal1 = await c.start("true")
    high = await c.start("true", priority="high")
    normal2 = await c.start("true", priority="normal")
    assert (high.queue_position, normal2.queue_position) == (1, 3)
    assert (await c.get(low.id)).queue_position == 4
    release.touch()
    done = await ended(c, blocker.id, low.id, normal1.id, high.id, normal2.id)
    order = [j.id for j in sorted(done[1:], key=lambda j: j.started_at)]
    assert order == [high.id, normal1.id, normal2.id, low.id]
    assert [j.priority for j in done[1:]] == [-10, 0, 10, 0]
    await c.close()


@pytest.mark.parametrize("fast", [True, False])
async def test_after_starts_once_its_job_succeeded_and_ps_shows_the_wait(daemon, tmp_root, fast):
    c = await daemon.client()
    release = tmp_root / "go"
    first = await c.start(until_file(release), timeout=30)
    res = ccxctl(daemon, "run", "-d", "--after", first.id, "--priority", "5", "echo second", fast=fast)
    assert res.returncode == 0, res.stderr
    second = await c.get(res.stdout.strip())
    assert (second.state, second.wait_reason, second.after, second.priority) == (
        "queued",
        f"job {first.id} (after)",
        [first.id],
        5,
    )
    ps = ccxctl(daemon, "ps")
    assert f"waiting (job {first.id} (after))" in ps.stdout
    release.touch()
    a, b = await ended(c, first.id, second.id)
    assert (b.reason, b.exit_code) == ("exited", 0) and b.started_at >= a.finished_at
    await c.close()


async def test_a_failed_dependency_ends_the_waiting_job_and_after_any_still_runs(daemon, client, tmp_root):
    release = tmp_root / "go"
    first = await client.start(until_file(release, code=3), timeout=30)
    needs = await client.start("echo never", after=[first.id])
    chained = await client.start("echo never", after=[needs.id])
    anyway = await client.start("echo anyway", after_any=[first.id])
    release.touch()
    a, n, ch, any_ = await ended(client, first.id, needs.id, chained.id, anyway.id)
    assert a.exit_code == 3
    assert (n.reason, n.error, n.started_at) == (
        "dependency_failed",
        f"job {first.id} (after) exited 3",
        None,
    )
    assert (ch.reason, ch.error) == (
        "dependency_failed",
        f"job {needs.id} (after) ended dependency_failed (job {first.id} (after) exited 3)",
    )
    assert (any_.reason, any_.exit_code) == ("exited", 0) and any_.started_at >= a.finished_at
    # A dependency that failed already: the new job ends at once, with the reason.
    late = await client.start("echo never", after=[first.id])
    assert (late.state, late.reason) == ("finished", "dependency_failed")
    res = ccxctl(daemon, "run", "--after", first.id, "echo never")
    assert (res.returncode, res.stdout) == (127, "")
    assert res.stderr.endswith(f"did not run: job {first.id} (after) exited 3\n")
    listed = ccxctl(daemon, "history", "list", "--status", "dependency_failed", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {j["id"] for j in json.loads(listed.stdout)} >= {needs.id, chained.id, late.id}


async def test_unknown_dependencies_are_refused(daemon, client):
    with pytest.raises(RemoteError) as unknown:
        await client.start("true", after_any=["0000nosuchjob"])
    assert unknown.value.code == -32602 and "unknown job 0000nosuchjob" in unknown.value.message
    res = ccxctl(daemon, "run", "--after", "0000nosuchjob", "true")
    assert res.returncode != 0 and "unknown job 0000nosuchjob" in res.stderr
    assert (await client.list()) == []


async def test_wait_exits_with_the_worst_code_and_waits_for_a_group(daemon, client, tmp_root):
    release = tmp_root / "go"
    ok = await client.start(until_file(release), group="batch", timeout=30)
    bad = await client.start(until_file(release, code=5), group="batch", timeout=30)
    other = await client.start("exit 9")
    assert (await client.wait(other.id)).exit_code == 9
    waiter = subprocess.Popen(
        [sys.executable, "-m", "ccxctl", "wait", "--group", "batch"],
        env=dict(daemon.env, CCXD_SOCKET=str(daemon.socket)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None  # it names the jobs it found before it waits for them
        assert waiter.stderr.readline() == f"ccxctl: waiting for 2 job(s): {ok.id} {bad.id}\n"
        timed_out = ccxctl(daemon, "wait", ok.id, "--timeout", "0.2")
        assert timed_out.returncode == 124 and ok.id in timed_out.stderr
        release.touch()
        out, _ = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 5
    assert sorted(out.splitlines()) == sorted([f"{ok.id}\texit 0", f"{bad.id}\texit 5"])
    both = ccxctl(daemon, "wait", ok.id, other.id, fast=False)
    assert both.returncode == 9
