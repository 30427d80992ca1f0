"""Daily and monthly Claude budgets: spend per local day, the decision, the gate's hold (no processes)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from ccxd.claude.budget import Budgets, Spend, next_day, next_month, spent
from ccxd.claude.gate import ClaudeGate
from ccxd.config import Config, GroupConfig
from ccxd.jobs.job import Job
from ccxd.output.log import OutputLog
from ccxd.protocol import ClaudeInfo, JobInfo, JobReason, JobState, StartParams


@pytest.fixture(autouse=True)
def local_time_is_berlin() -> Iterator[None]:
    """Local days: the budgets reset at local midnight, not UTC's."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def make_job(name: str, argv: list[str], group: str | None = None) -> Job:
    return Job(
        name, StartParams(command=argv, group=group), argv=argv, shell=None, cwd="/", log=OutputLog(65536),
        node="n", peer="", timeout=None, idle_timeout=None,
    )  # fmt: skip


def at(text: str) -> float:
    """Epoch seconds of local ``YYYY-MM-DD HH:MM``."""
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M"))


def test_spend_counts_per_local_day_and_month() -> None:
    s = Spend()
    s.add(0.5, at("2026-12-06 23:30"))
    s.add(0.25, at("2026-12-07 00:30"))  # 23:30 UTC of the 6th: the 7th here
    s.add(0.0, at("2026-12-07 01:00"))
    assert s.today(at("2026-12-07 12:00")) == 0.25
    assert s.this_month(at("2026-12-07 12:00")) == 0.75
    s.add(1.0, at("2027-01-01 08:00"))  # a new month forgets the old one's days
    assert s.this_month(at("2027-01-01 09:00")) == 1.0 and list(s.days) == ["2027-01-01"]


def test_spent_says_which_budget_and_when_it_resets() -> None:
    s = Spend()
    now = at("2026-12-07 15:00")
    s.add(0.4, now)
    assert spent(s, 0.0, 0.0, now) is None  # 0: no budget
    assert spent(s, 0.5, 0.0, now) is None
    assert spent(s, 0.4, 0.0, now) == ("daily budget spent, resets 00:00", at("2026-12-08 00:00"))
    assert spent(s, 0.4, 0.0, at("2026-12-08 00:00")) is None  # midnight: a new day
    # The monthly budget first: it lasts longer.
    assert spent(s, 0.1, 0.3, now) == ("monthly budget spent, resets Jan 01", at("2027-01-01 00:00"))
    assert next_day(at("2026-12-31 23:59")) == at("2027-01-01 00:00")
    assert next_month(at("2026-12-31 23:59")) == at("2027-01-01 00:00")


def finished(cost: float, when: str) -> JobInfo:
    return JobInfo(
        id="j", state=JobState.FINISHED, reason=JobReason.EXITED, command="claude -p", argv=[], cwd="/",
        queued_at=at(when), finished_at=at(when), claude=ClaudeInfo(cost_usd=cost),
    )  # fmt: skip


def test_history_seeds_the_spend_and_refusal_follows_the_action() -> None:
    cfg = Config(claude_budget_daily_usd=1.0)
    budgets = Budgets(lambda: cfg)
    budgets.spend.seed([finished(0.75, "2026-12-07 09:00"), finished(5.0, "2026-12-06 09:00")])
    now = at("2026-12-07 15:00")
    info = budgets.info(now)
    assert (info.spent_today_usd, info.spent_month_usd, info.spent) == (0.75, 5.75, None)
    budgets.spend.add(0.25, now)
    assert budgets.info(now).spent == "daily budget spent, resets 00:00"
    assert budgets.refuses(now) is None  # "wait": held by the gate, not refused
    cfg.claude_budget_action = "refuse"
    assert budgets.refuses(now) == ("daily budget spent, resets 00:00", at("2026-12-08 00:00"))


async def test_the_gate_holds_claude_jobs_while_a_budget_is_spent() -> None:
    now = [1_800_000_000.0]
    kicked = asyncio.Event()
    gate = ClaudeGate(lambda: 4, kicked.set, clock=lambda: now[0])
    over: list[tuple[str, float]] = []
    gate.budget = lambda t, group: over[0] if over and t < over[0][1] else None
    assert gate.may_start(make_job("a", ["claude", "-p", "hi"]))
    over.append(("daily budget spent, resets 00:00", now[0] + 0.05))
    job = make_job("b", ["claude", "-p", "hi"])
    assert not gate.may_start(job)
    assert (job.wait_until, job.wait_reason) == (None, "daily budget spent, resets 00:00")
    assert gate.may_start(make_job("sh", ["sleep", "1"]))  # shell jobs are not held
    await asyncio.wait_for(kicked.wait(), 5)  # the reset time: the gate kicks the queue
    now[0] += 0.05
    assert gate.may_start(job) and job.wait_reason is None
    gate.close()


def test_a_group_budget_holds_only_that_groups_claude_jobs() -> None:
    cfg = Config(groups={"build": GroupConfig(budget_daily_usd=0.5), "docs": GroupConfig(parallel=1)})
    budgets = Budgets(lambda: cfg)
    assert budgets.configured()
    now = at("2026-12-07 15:00")
    budgets.seed([finished(0.4, "2026-12-07 09:00")])  # no group: the daemon's spend only
    budgets.add(0.5, now, "build")
    assert budgets.spent(now, "build") == (
        "daily budget of group build spent, resets 00:00",
        at("2026-12-08 00:00"),
    )
    assert budgets.spent(now, "docs") is None and budgets.spent(now) is None
    info = budgets.info(now)
    assert (info.spent_today_usd, info.spent) == (0.9, None)
    [group] = info.groups  # only groups with a budget are shown
    assert (group.group, group.spent_today_usd, group.daily_usd, group.monthly_usd) == (
        "build",
        0.5,
        0.5,
        0.0,
    )
    assert group.spent == "daily budget of group build spent, resets 00:00" and group.action == "wait"
    assert budgets.spent(at("2026-12-08 00:00"), "build") is None  # a new day
    cfg.groups["build"].budget_monthly_usd = 0.5
    assert budgets.spent(at("2026-12-08 00:00"), "build") == (
        "monthly budget of group build spent, resets Jan 01",
        at("2027-01-01 00:00"),
    )
    cfg.claude_budget_action = "refuse"
    assert budgets.refuses(now, "build") is not None and budgets.refuses(now, "docs") is None


async def test_the_gate_asks_the_budget_of_the_jobs_group() -> None:
    asked: list[str | None] = []

    def budget(now: float, group: str | None) -> tuple[str, float] | None:
        asked.append(group)
        return ("daily budget of group build spent, resets 00:00", now + 3600) if group == "build" else None

    gate = ClaudeGate(lambda: 4, lambda: None)
    gate.budget = budget
    held = make_job("a", ["claude", "-p", "hi"], group="build")
    assert not gate.may_start(held) and held.wait_reason == "daily budget of group build spent, resets 00:00"
    assert gate.may_start(make_job("b", ["claude", "-p", "hi"], group="docs"))
    assert gate.may_start(make_job("c", ["claude", "-p", "hi"]))
    assert asked == ["build", "docs", None]
    gate.close()
