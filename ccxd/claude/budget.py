"""Claude spending budgets, daemon-wide and per queue group: what was spent per day and month (no I/O).

``claude_budget_daily_usd`` and ``claude_budget_monthly_usd`` cap what the
Claude jobs of one daemon (one account) may cost per local day and calendar
month; a queue group's ``budget_daily_usd`` and ``budget_monthly_usd`` cap its
own Claude jobs (``job.start`` ``group``) the same way.  A job's cost counts when
it finishes (its ``result`` says what it cost), on the day it finished.  Once a
budget is spent, :func:`spent` says why and when it resets; the gate then holds
new Claude jobs (``ClaudeGate``) or ``job.start`` refuses them
(``claude_budget_action``).  Jobs running already are not stopped: a job's own
``max_budget_usd`` is for that.  (No per-account budgets: a daemon runs its
Claude jobs with one account.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from ccxd.claude.monitor import monitor_of
from ccxd.config import Config
from ccxd.protocol import ClaudeBudget, ClaudeGroupBudget, JobInfo

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

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


def spent(spend: Spend, daily: float, monthly: float, now: float, whose: str = "") -> Spent | None:
    """Which budget is spent at ``now`` (the monthly one first: it lasts longer), or None.

    A budget of 0 is no budget; ``whose`` names a group's (``of group build``).
    """
    of = f" {whose}" if whose else ""
    if monthly > 0 and spend.this_month(now) >= monthly:
        resets = next_month(now)
        when = time.strftime("%b %d", time.localtime(resets))
        return Spent(f"monthly budget{of} spent, resets {when}", resets)
    if daily > 0 and spend.today(now) >= daily:
        return Spent(f"daily budget{of} spent, resets 00:00", next_day(now))
    return None


class Budgets:
    """The daemon's budgets and its groups': the :class:`Spend` of each against the config."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config
        self.spend = Spend()
        self.groups: dict[str, Spend] = {}
        """What each queue group's Claude jobs spent (every group, budget or not: one may be set)."""

    def configured(self) -> bool:
        """True when some budget is set (the history is read at start only then)."""
        cfg = self.config()
        return bool(
            cfg.claude_budget_daily_usd
            or cfg.claude_budget_monthly_usd
            or any(g.budget_daily_usd or g.budget_monthly_usd for g in cfg.groups.values())
        )

    def spent(self, now: float, group: str | None = None) -> Spent | None:
        """The budget spent at ``now`` for a Claude job of ``group``, if any (the daemon's first)."""
        cfg = self.config()
        over = spent(self.spend, cfg.claude_budget_daily_usd, cfg.claude_budget_monthly_usd, now)
        if over is None and group is not None:
            over = self._group_spent(group, now)
        return over

    def _group_spent(self, group: str, now: float) -> Spent | None:
        rule = self.config().groups.get(group)
        if rule is None or not (rule.budget_daily_usd or rule.budget_monthly_usd):
            return None
        spend = self.groups.get(group) or Spend()
        return spent(spend, rule.budget_daily_usd, rule.budget_monthly_usd, now, f"of group {group}")

    def refuses(self, now: float, group: str | None = None) -> Spent | None:
        """The spent budget when new Claude jobs are refused rather than held, else None."""
        return self.spent(now, group) if self.config().claude_budget_action == "refuse" else None

    def add(self, cost: float, at: float, group: str | None) -> None:
        """A Claude job of ``group`` that cost ``cost`` finished at ``at``."""
        self.spend.add(cost, at)
        if group is not None:
            self.groups.setdefault(group, Spend()).add(cost, at)

    def seed(self, jobs: Iterable[JobInfo]) -> None:
        """Count the finished Claude jobs of a history (each job once: call it once, at start)."""
        for job in jobs:
            c = job.claude
            if c is not None and c.cost_usd and job.finished_at is not None:
                self.add(c.cost_usd, job.finished_at, job.group)

    def job_finished(self, job: Job, now: float) -> None:
        """Count what a finished Claude job cost (its ``result``'s ``total_cost_usd``)."""
        monitor = monitor_of(job)
        cost = monitor.info.cost_usd if monitor is not None else None
        if cost:
            self.add(float(cost), now, job.params.group)

    def info(self, now: float) -> ClaudeBudget:
        """``claude.budget``: spend against the budgets at ``now``, the daemon's and its groups'."""
        cfg = self.config()
        over = spent(self.spend, cfg.claude_budget_daily_usd, cfg.claude_budget_monthly_usd, now)
        groups = []
        for name, rule in sorted(cfg.groups.items()):
            if not (rule.budget_daily_usd or rule.budget_monthly_usd):
                continue
            spend = self.groups.get(name) or Spend()
            mine = self._group_spent(name, now)
            groups.append(
                ClaudeGroupBudget(
                    group=name,
                    spent_today_usd=round(spend.today(now), 6),
                    spent_month_usd=round(spend.this_month(now), 6),
                    daily_usd=rule.budget_daily_usd,
                    monthly_usd=rule.budget_monthly_usd,
                    action=cfg.claude_budget_action,
                    spent=mine.reason if mine is not None else None,
                    resets_at=mine.resets_at if mine is not None else None,
                )
            )
        return ClaudeBudget(
            spent_today_usd=round(self.spend.today(now), 6),
            spent_month_usd=round(self.spend.this_month(now), 6),
            daily_usd=cfg.claude_budget_daily_usd,
            monthly_usd=cfg.claude_budget_monthly_usd,
            action=cfg.claude_budget_action,
            spent=over.reason if over is not None else None,
            resets_at=over.resets_at if over is not None else None,
            groups=groups,
        )
