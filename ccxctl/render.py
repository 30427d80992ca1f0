"""Showing results: aligned tables on a terminal, tab-separated text when piped, JSON on request."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import msgspec
from msgspec import Struct

from ccxd.protocol import NOTIFICATIONS, ClaudeBudget, ClaudeGroupBudget, ClaudeInfo, HookEvent, JobInfo

__all__ = [
    "describe_limit",
    "describe_outcome",
    "emit_event",
    "emit_event_raw",
    "emit_json",
    "event_name",
    "human_duration",
    "job_rows",
    "table",
]


def emit_json(value: object) -> None:
    """Print ``value`` (Structs, lists, dicts) as one JSON document."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


_EVENT_NAMES: dict[type, str] = {}
for _method, _params in NOTIFICATIONS.items():
    _EVENT_NAMES.setdefault(_params, _method)


def event_name(event: Struct) -> str:
    """The notification method that carries ``event`` (``job.output``, ``hook.error`` ...)."""
    if isinstance(event, HookEvent):  # one params type for the three hook notifications
        return f"hook.{event.hook.point}"
    return _EVENT_NAMES.get(type(event), type(event).__name__)


def emit_event(event: Struct) -> None:
    """Print one event of a followed job as ``{"event": METHOD, "data": PARAMS}`` on a line."""
    emit_event_raw(event_name(event), msgspec.json.encode(event))


def emit_event_raw(method: str, params: bytes) -> None:
    """:func:`emit_event` for params already encoded (as the daemon sent them)."""
    sys.stdout.buffer.write(b'{"event":"' + method.encode() + b'","data":' + params + b"}\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows: padded columns on a terminal, tab-separated when piped."""
    if not sys.stdout.isatty():
        print("\t".join(headers))
        for row in rows:
            print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
        return
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    # The last column (usually the command) is not padded, so long commands wrap naturally.
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def human_duration(seconds: float | None) -> str:
    """``1.23s``, ``4m05s``, ``2h03m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def human_limit(seconds: float) -> str:
    """``0.5s``, ``30s``, ``10m``, ``2m30s``, ``1h``, ``1h05m``."""
    if seconds < 60:
        return f"{round(seconds, 2):g}s"
    whole = round(seconds)
    if whole < 3600:
        m, s = divmod(whole, 60)
        return f"{m}m{s:02d}s" if s else f"{m}m"
    h, m = divmod(whole // 60, 60)
    return f"{h}h{m:02d}m" if m else f"{h}h"


def describe_limit(job: JobInfo) -> str:
    """The timeout rule: ``30s`` (a deadline), ``silent 5m after 10m`` (an estimate's guard) or ``-``."""
    if job.timeout is None:
        return "-"
    if job.timeout_silence is None:
        return human_limit(job.timeout)
    return f"silent {human_limit(job.timeout_silence)} after {human_limit(job.timeout)}"


def describe_outcome(job: JobInfo) -> str:
    """A short outcome: ``exit 0``, ``signal 9``, ``timeout``, ``queued #3``, ``waiting until 14:05``."""
    text = _outcome(job)
    if job.attempt > 1:
        text += f" (attempt {job.attempt})"
    if job.retried_by:
        text += f" → retried as {job.retried_by}"
    return text


def _outcome(job: JobInfo) -> str:
    if job.state == "queued":
        if job.wait_until is not None:
            until = time.strftime("%H:%M", time.localtime(job.wait_until))
            return f"waiting until {until}" + (f" ({job.wait_reason})" if job.wait_reason else "")
        if job.wait_reason:
            return f"waiting ({job.wait_reason})"
        return f"queued #{job.queue_position}" if job.queue_position else "queued"
    if job.state != "finished":
        return str(job.state)
    reason = str(job.reason)
    if reason == "exited":
        return f"exit {job.exit_code}"
    if reason == "killed" and job.signal is not None:
        return f"signal {job.signal}"
    return reason


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def job_rows(jobs: Sequence[JobInfo]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for a list of jobs (cost and tokens when there are Claude jobs).

    A NODE column when the jobs ran on several nodes of a fleet (``-``: queued fleet-wide).
    """
    claude = any(j.claude is not None for j in jobs)
    nodes = len({j.node for j in jobs}) > 1
    headers = ["id", "state", "outcome", "started", "duration", "limit"]
    headers += ["node"] if nodes else []
    headers += ["cost", "tokens in/out"] if claude else []
    headers.append("command")
    rows = []
    for j in jobs:
        command = j.command if isinstance(j.command, str) else " ".join(j.command)
        row = [
            j.id,
            str(j.state),
            describe_outcome(j),
            _when(j.started_at or j.queued_at),
            human_duration(j.duration),
            describe_limit(j),
        ]
        if nodes:
            row.append(j.node or "-")
        if claude:
            c = j.claude
            row += [_cost(c.cost_usd if c else None), _tokens(c.input_tokens, c.output_tokens) if c else "-"]
        row.append(command)
        rows.append(row)
    return headers, rows


def budget_line(b: ClaudeBudget | ClaudeGroupBudget) -> str:
    """``spent today $0.4200 of $1.0000 (daily budget), this month $3.1000 (no monthly budget)``.

    A group's line starts ``group NAME:``.
    """

    def against(spent: float, budget: float, name: str) -> str:
        return (
            f"{_cost(spent)} of {_cost(budget)} ({name} budget)"
            if budget
            else f"{_cost(spent)} (no {name} budget)"
        )

    text = (
        (f"group {b.group}: " if isinstance(b, ClaudeGroupBudget) else "")
        + f"spent today {against(b.spent_today_usd, b.daily_usd, 'daily')}, "
        f"this month {against(b.spent_month_usd, b.monthly_usd, 'monthly')}"
    )
    if b.spent is not None:
        text += f"; new Claude jobs {'wait' if b.action == 'wait' else 'are refused'}: {b.spent}"
    return text


def _cost(usd: float | None) -> str:
    return "-" if usd is None else f"${usd:.4f}"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _tokens(tokens_in: int | None, tokens_out: int | None) -> str:
    if tokens_in is None and tokens_out is None:
        return "-"
    return f"{_count(tokens_in)}/{_count(tokens_out)}"


def claude_fields(c: ClaudeInfo) -> dict[str, str]:
    """A Claude job's record for ``history show``."""
    fields = {
        "claude": "ok" if c.error_class is None and c.ok else f"{c.error_class or 'no result'}",
        "session": c.session_id or "-",
        "model": c.model or "-",
        "cost": _cost(c.cost_usd),
        "tokens": f"{_tokens(c.input_tokens, c.output_tokens)} in/out, {c.cache_read_tokens or 0} cache read",
        "turns": str(c.turns) if c.turns is not None else "-",
    }
    if c.error:
        fields["c. error"] = c.error
    if c.reset_at:
        fields["resets"] = _when(c.reset_at)
    return fields


def usage_tables(jobs: Sequence[JobInfo], json_out: bool, budget: ClaudeBudget | None = None) -> None:
    """``history stats --claude``: cost and tokens per day and per Claude session, and the budgets."""
    from ccxd.claude.usage import by_day, by_session

    days, sessions = by_day(jobs), by_session(jobs)
    if json_out:
        emit_json({"days": days, "sessions": sessions, "budget": budget})
        return
    if budget is not None:
        print(budget_line(budget))
        for group in budget.groups:
            print(budget_line(group))
    for title, rows in (("day", days), ("session", sessions)):
        table(
            [title, "jobs", "failed", "cost", "tokens in", "tokens out", "cache read", "turns"],
            [
                [
                    r.key,
                    str(r.jobs),
                    str(r.failed),
                    _cost(r.cost_usd),
                    _count(r.input_tokens),
                    _count(r.output_tokens),
                    _count(r.cache_read_tokens),
                    str(r.turns),
                ]
                for r in rows
            ],
        )
