"""Cost budgets for Claude jobs: the real CLI under a real daemon, against the fake API.

The fake's token counts set the cost: the CLI prices them itself (100 000 input
and 1 000 output tokens of the default model cost about $0.42).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from msgspec import structs

from ccxd.client.connection import RemoteError
from ccxd.protocol import EmptyParams, JobFinished, JobInfo, StartParams
from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Stream
from tests.claude.test_claude_jobs import claude_params
from tests.claude.test_claude_retry import chain
from tests.claude.test_claude_shell_jobs import ccxctl, start_daemon

pytestmark = pytest.mark.timeout(240)

DEAR = Stream(text="An expensive answer.", input_tokens=100_000, output_tokens=1_000)


@pytest.fixture
def cli_dir(claude_bin: str, claude_home: Path) -> Path:
    """A PATH directory whose ``claude`` is the pinned CLI."""
    import os

    d = claude_home / "bin"
    d.mkdir()
    (d / "claude").symlink_to(os.path.realpath(claude_bin))
    return d


def claude_job(api: FakeApi, home: Path, cli_dir: Path, **kw: Any) -> StartParams:
    """A ``kind: "claude"`` job whose ``claude`` is the pinned CLI."""
    params = claude_params(api, home, **kw)
    params.env["PATH"] = f"{cli_dir}:{params.env['PATH']}"
    return params


async def finals(d: Any, params: StartParams) -> list[JobInfo]:
    """Start ``params`` and follow it and any retries to the end: the final records."""
    c = await d.client()
    try:
        job = await c.call("job.start", structs.replace(params, subscribe=True), follow=True)
        return [ev.job async for ev in chain(c, job.id) if isinstance(ev, JobFinished)]
    finally:
        await c.close()


# -- per job -------------------------------------------------------------------------


async def test_claude_job_over_its_budget_ends_budget_exceeded_and_is_not_retried(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR, DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)  # retries on
    (job,) = await finals(d, claude_job(fake_api, claude_home, cli_dir, max_budget_usd=0.01))
    # The CLI's own flag stopped it; ccxd names the outcome.
    assert job.argv[job.argv.index("--max-budget-usd") + 1] == "0.01"
    assert job.reason == "budget_exceeded" and job.retried_by is None
    assert job.claude is not None and job.claude.error_class == "max_budget"
    assert job.claude.cost_usd is not None and job.claude.cost_usd > 0.01
    assert len(fake_api.messages) == 1
    ps = ccxctl(d, "ps", "-a")
    assert job.id in ps.stdout.decode() and "budget_exceeded" in ps.stdout.decode(), ps
    # ccxctl claude --max-budget-usd says so and fails.
    fake_api.script(DEAR)
    res = ccxctl(d, "claude", "--cwd", str(claude_home), "--max-budget-usd", "0.01", "hi")
    assert res.returncode == 1 and b"budget_exceeded" in res.stderr, res


async def test_shell_claude_job_without_the_flag_is_held_to_its_budget_by_ccxd(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    command = "claude -p hi --output-format stream-json --verbose"
    (job,) = await finals(d, StartParams(command=command, cwd=str(claude_home), max_budget_usd=0.05))
    # The CLI answered without knowing the budget; the cost it reported passed it.
    assert "--max-budget-usd" not in job.argv[-1]
    assert job.reason == "budget_exceeded" and job.retried_by is None
    assert job.claude is not None and job.claude.error_class == "max_budget"
    assert "passed the budget $0.05" in (job.claude.error or "")


# -- per day -------------------------------------------------------------------------


async def test_once_the_daily_budget_is_spent_claude_jobs_wait_and_shell_jobs_run(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir, claude_budget_daily_usd="0.01")
    stats = ccxctl(d, "history", "stats", "--claude")
    assert "spent today $0.0000 of $0.0100 (daily budget)" in stats.stdout.decode(), stats
    (first,) = await finals(d, claude_job(fake_api, claude_home, cli_dir))
    assert first.reason == "exited" and first.claude is not None and first.claude.cost_usd
    c = await d.client()
    try:
        second = await c.call("job.start", claude_job(fake_api, claude_home, cli_dir))
        assert second.state == "queued" and second.wait_reason == "daily budget spent, resets 00:00"
        # The queue still moves: a shell job submitted after it runs and ends ...
        shell = await c.start("echo not held", subscribe=True)
        ends = [ev.job async for ev in c.events(shell.id) if isinstance(ev, JobFinished)]
        assert [j.exit_code for j in ends] == [0]
        # ... while the Claude job waits, and says why.
        again = await c.get(second.id)
        assert again.state == "queued" and again.wait_reason == "daily budget spent, resets 00:00"
        ps = ccxctl(d, "ps").stdout.decode()
        line = next(row for row in ps.splitlines() if second.id in row)
        assert "waiting (daily budget spent, resets 00:00)" in line, ps
        stats = ccxctl(d, "history", "stats", "--claude").stdout.decode()
        spent = f"spent today ${first.claude.cost_usd:.4f} of $0.0100 (daily budget)"
        assert spent in stats and "new Claude jobs wait: daily budget spent, resets 00:00" in stats, stats
        await c.cancel(second.id)
    finally:
        await c.close()
    assert len(fake_api.messages) == 1  # the second job never reached the API


async def test_with_action_refuse_a_claude_job_is_refused_once_the_budget_is_spent(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = start_daemon(
        daemon_factory,
        fake_api,
        claude_home,
        cli_dir,
        claude_budget_daily_usd="0.01",
        claude_budget_action="refuse",
    )
    await finals(d, claude_job(fake_api, claude_home, cli_dir))
    c = await d.client()
    try:
        with pytest.raises(RemoteError) as refused:
            await c.call("job.start", claude_job(fake_api, claude_home, cli_dir))
        assert refused.value.code == -32011
        assert refused.value.message == (
            "Claude job refused: daily budget spent, resets 00:00 (claude_budget_action is refuse)"
        )
        # A shell string that runs claude is a Claude job too; a plain shell job is not.
        with pytest.raises(RemoteError):
            await c.start("claude -p hi", cwd=str(claude_home))
        assert (await c.start("true")).state in ("queued", "starting", "running", "finished")
    finally:
        await c.close()
    res = ccxctl(d, "claude", "--cwd", str(claude_home), "hi")
    assert res.returncode != 0 and b"daily budget spent, resets 00:00" in res.stderr, res
    stats = ccxctl(d, "history", "stats", "--claude").stdout.decode()
    assert "new Claude jobs are refused: daily budget spent" in stats, stats
    assert len(fake_api.messages) == 1


async def test_the_spend_of_today_survives_a_daemon_restart(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir, claude_budget_daily_usd="0.01")
    (first,) = await finals(d, claude_job(fake_api, claude_home, cli_dir))
    assert first.claude is not None and first.claude.cost_usd
    d.stop()
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c = await d2.client()
    try:
        budget = await c.call("claude.budget", EmptyParams())
        assert budget.spent_today_usd == pytest.approx(first.claude.cost_usd)
        assert budget.spent == "daily budget spent, resets 00:00"
        second = await c.call("job.start", claude_job(fake_api, claude_home, cli_dir))
        assert second.state == "queued" and second.wait_reason == "daily budget spent, resets 00:00"
        await c.cancel(second.id)
    finally:
        await c.close()


# -- per queue group -------------------------------------------------------------------


def with_group_budget(daemon_factory: Any, api: FakeApi, home: Path, cli_dir: Path, extra: str = "") -> Any:
    """A daemon whose queue group ``build`` may spend $0.01 a day on Claude jobs."""
    env = claude_env(api, home)
    env["PATH"] = f"{cli_dir}:{env['PATH']}"
    d = daemon_factory(extra_env=env, root=home / "ccxd", start=False)
    (d.config_home / "ccxd").mkdir(mode=0o700, exist_ok=True)
    (d.config_home / "ccxd" / "config.toml").write_text(f"{extra}[groups.build]\nbudget_daily_usd = 0.01\n")
    return d.start()


async def test_a_groups_daily_budget_holds_its_claude_jobs_and_no_others(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR, Stream(text="Another group's job runs."))
    d = with_group_budget(daemon_factory, fake_api, claude_home, cli_dir)
    (first,) = await finals(d, claude_job(fake_api, claude_home, cli_dir, group="build"))
    assert first.reason == "exited" and first.claude is not None and first.claude.cost_usd
    held_why = "daily budget of group build spent, resets 00:00"
    c = await d.client()
    try:
        second = await c.call("job.start", claude_job(fake_api, claude_home, cli_dir, group="build"))
        assert second.state == "queued" and second.wait_reason == held_why
        # A Claude job of no group (the daemon has no budget of its own) runs.
        (other,) = await finals(d, claude_job(fake_api, claude_home, cli_dir))
        assert other.reason == "exited" and other.claude is not None and other.claude.ok
        assert (await c.get(second.id)).wait_reason == held_why
        ps = ccxctl(d, "ps").stdout.decode()
        line = next(row for row in ps.splitlines() if second.id in row)
        assert f"waiting ({held_why})" in line, ps
        stats = ccxctl(d, "history", "stats", "--claude").stdout.decode()
        group_line = next(row for row in stats.splitlines() if row.startswith("group build: "))
        assert f"spent today ${first.claude.cost_usd:.4f} of $0.0100 (daily budget)" in group_line, stats
        assert f"new Claude jobs wait: {held_why}" in group_line, stats
        budget = await c.call("claude.budget", EmptyParams())
        assert budget.spent is None and [g.group for g in budget.groups] == ["build"]
        await c.cancel(second.id)
    finally:
        await c.close()
    assert len(fake_api.messages) == 2  # the held job never reached the API


async def test_with_action_refuse_a_claude_job_of_a_spent_group_is_refused(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = with_group_budget(daemon_factory, fake_api, claude_home, cli_dir, 'claude_budget_action = "refuse"\n')
    await finals(d, claude_job(fake_api, claude_home, cli_dir, group="build"))
    c = await d.client()
    try:
        with pytest.raises(RemoteError) as refused:
            await c.call("job.start", claude_job(fake_api, claude_home, cli_dir, group="build"))
        assert refused.value.code == -32011 and refused.value.message == (
            "Claude job refused: daily budget of group build spent, resets 00:00 (claude_budget_action is refuse)"
        )
        assert (await c.start("true", group="build")).id  # a shell job of the group is not refused
    finally:
        await c.close()
    res = ccxctl(d, "claude", "--cwd", str(claude_home), "--group", "build", "hi")
    assert res.returncode != 0 and b"daily budget of group build spent" in res.stderr, res
    assert len(fake_api.messages) == 1
