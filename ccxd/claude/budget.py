"""Daemon-wide Claude spending budgets: what was spent per day and month, and whether it is all gone (no I/O).

``claude_budget_daily_usd`` and ``claude_budget_monthly_usd`` cap what the
Claude jobs of one daemon (one account) may cost per local day and calendar
month.  A job's cost counts when it finishes (its ``result`` says what it
cost), on the day it finished.  Once a budget is spent, :func:`spent` says why
and when it resets; the gate then holds new Claude jobs (``ClaudeGate``) or
``job.start`` refuses them (``claude_budget_action``).  Jobs running already are
not stopped: a job's own ``max_budget_usd`` is for that.

Budgets per queue group or per account of a shared daemon are not done: one
daemon, one budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from ccxd.config import Config
from ccxd.protocol import ClaudeBudget, JobInfo

if TYPE_CHECKING:
    from ccxd.supervision.job import Job

__all__ = [
    "Budgets",
    "Spend",
    "Spent",
    "day_key",
    "month_key",
    "month_start",
    "next_day",
    "next_month",
    "spent",
]


def day_key(at: float) -> str:
    """``YYYY-MM-DD`` of ``at`` in local time."""
    return time.strftime("%Y-%m-%d", time.localtime(at))


def month_key(at: float) -> str:
    """``YYYY-MM`` of ``at`` in local time."""
    return time.strftime("%Y-%m", time.localtime(at))


def next_day(now: float) -> float:
    """The next local midnight after ``now`` (epoch seconds)."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday + 1, 0, 0, 0, 0, 0, -1))


def next_month(now: float) -> float:
    """The first local midnight of the month after ``now``'s (epoch seconds)."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon + 1, 1, 0, 0, 0, 0, 0, -1))


def month_start(now: float) -> float:
    """The first local midnight of ``now``'s month."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))


class Spend:
    """US dollars spent by finished Claude jobs, per local day (kept for the current month)."""

    def __init__(self) -> None:
        self.days: dict[str, float] = {}

    def add(self, cost: float, at: float) -> None:
        """A job that cost ``cost`` finished at ``at``; days of earlier months are forgotten."""
        if cost <= 0:
            return
        key = day_key(at)
        self.days[key] = self.days.get(key, 0.0) + cost
        month = key[:7]
        for old in [k for k in self.days if k[:7] < month]:
            del self.days[old]

    def seed(self, jobs: Iterable[JobInfo]) -> None:
        """Count the finished Claude jobs of a history (each job once: call it once, at start)."""
        for job in jobs:
            c = job.claude
            if c is not None and c.cost_usd and job.finished_at is not None:
                self.add(c.cost_usd, job.finished_at)

    def today(self, now: float) -> float:
        """Spent on ``now``'s local day."""
        return self.days.get(day_key(now), 0.0)

    def this_month(self, now: float) -> float:
        """Spent in ``now``'s local month."""
        month = month_key(now)
        return sum(v for k, v in self.days.items() if k[:7] == month)


class Spent(NamedTuple):
    """A budget is spent: why (words for ``ccxctl ps``) and when it resets (epoch seconds)."""

    reason: str
    resets_at: float


def spent(spend: Spend, daily: float, monthly: float, now: float) -> Spent | None:
    """Which budget is spent at ``now`` (the monthly one first: it lasts longer), or None.

    A budget of 0 is no budget.
    """
    if monthly > 0 and spend.this_month(now) >= monthly:
        resets = next_month(now)
        return Spent(f"monthly budget spent, resets {time.strftime('%b %d', time.localtime(resets))}", resets)
    if daily > 0 and spend.today(now) >= daily:
        return Spent("daily budget spent, resets 00:00", next_day(now))
    return None


class Budgets:
    """The daemon's budgets: its :class:`Spend` against the config, asked with the time."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config
        self.spend = Spend()

    def spent(self, now: float) -> Spent | None:
        """The budget spent at ``now``, if any (the gate's and ``job.start``'s question)."""
        cfg = self.config()
        return spent(self.spend, cfg.claude_budget_daily_usd, cfg.claude_budget_monthly_usd, now)

    def refuses(self, now: float) -> Spent | None:
        """The spent budget when new Claude jobs are refused rather than held, else None."""
        return self.spent(now) if self.config().claude_budget_action == "refuse" else None

    def job_finished(self, job: Job, now: float) -> None:
        """Count what a finished Claude job cost (its ``result``'s ``total_cost_usd``)."""
        run = getattr(job, "claude", None)
        info = getattr(run, "info", None)
        cost = getattr(info, "cost_usd", None)
        if cost:
            self.spend.add(float(cost), now)

    def info(self, now: float) -> ClaudeBudget:
        """``claude.budget``: spend against the budgets at ``now``."""
        cfg = self.config()
        over = self.spent(now)
        return ClaudeBudget(
            spent_today_usd=round(self.spend.today(now), 6),
            spent_month_usd=round(self.spend.this_month(now), 6),
            daily_usd=cfg.claude_budget_daily_usd,
            monthly_usd=cfg.claude_budget_monthly_usd,
            action=cfg.claude_budget_action,
            spent=over.reason if over is not None else None,
            resets_at=over.resets_at if over is not None else None,
        )
