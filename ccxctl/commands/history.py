"""``ccxctl history …`` (stored jobs, output, statistics) and ``ccxctl sessions …``."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from typing import Annotated, Any

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import describe_outcome, emit_json, human_duration, job_rows, table
from ccxctl.top import resource_fields
from ccxd.client import Client
from ccxd.protocol import (
    ClaudeBudget,
    EmptyParams,
    HistoryParams,
    JobInfo,
    JobList,
    PruneParams,
    PruneResult,
    SessionDetail,
    SessionList,
    SessionListParams,
    SessionRef,
    StatsParams,
    StatsResult,
)

__all__ = ["history_app", "parse_since", "sessions_app"]

history_app = typer.Typer(help="Jobs that ran, their output and statistics.", no_args_is_help=True)
sessions_app = typer.Typer(help="Named groups of jobs (run --session NAME).", no_args_is_help=True)


_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` ago; an ISO date/time; or epoch seconds."""
    m = _AGO.match(text.strip())
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"cannot read {text!r}: use 2h, 1d, 2026-11-24 or epoch seconds", param_hint="--since"
        ) from None


@history_app.command("list")
def history_list(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Option(help="Only this session's jobs.")] = None,
    status_filter: Annotated[
        str | None, typer.Option("--status", help="State or reason: running, exited, timeout, lost …")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs queued since: 2h, 1d, a date.")] = None,
    grep: Annotated[str | None, typer.Option(help="Only commands matching this regular expression.")] = None,
    node: Annotated[str | None, typer.Option(help="Only the jobs of this fleet node.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Stored jobs, newest first."""
    query = HistoryParams(
        session=session,
        status=status_filter,  # type: ignore[arg-type]  # the daemon checks it, naming the choices
        since=parse_since(since) if since else None,
        grep=grep,
        node=node,
        limit=limit,
    )
    res: JobList = cli.with_client(ctx, lambda c: c.call("history.list", query))
    if json_out:
        emit_json(res.jobs)
        return
    table(*job_rows(res.jobs))


@history_app.command("show")
def history_show(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    json_out: JsonOpt = False,
) -> None:
    """A stored job's record, then its output."""

    async def work(client: Client) -> tuple[JobInfo, bytes, bytes]:
        info = await client.get(job)
        out, err = bytearray(), bytearray()
        offset = 0
        while True:
            page = await client.read(job, offset=offset, max_bytes=4 << 20)
            for chunk in page.chunks:
                (out if chunk.stream == "stdout" else err).extend(chunk.raw())
            if page.eof or not page.chunks:
                break
            offset = page.next_offset
        return info, bytes(out), bytes(err)

    info, out, err = cli.with_client(ctx, work)
    if json_out:
        emit_json(
            {"job": info, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}
        )
        return
    fields: dict[str, Any] = {
        "id": info.id,
        "state": info.state,
        "outcome": describe_outcome(info),
        "command": info.command if isinstance(info.command, str) else " ".join(info.command),
        "cwd": info.cwd,
        "shell": info.shell or "-",
        "session": info.session or "-",
        "duration": human_duration(info.duration),
        "timeout": _timeout_text(info),
        "output": f"{info.stdout_bytes} bytes stdout, {info.stderr_bytes} bytes stderr",
        "node": info.node,
        "peer": info.peer or "-",
    }
    if info.error:
        fields["error"] = info.error
    fields.update(resource_fields(info))
    if info.claude is not None:
        from ccxctl.render import claude_fields

        fields.update(claude_fields(info.claude))
    wt = info.worktree
    if wt is not None:  # started with --worktree
        fields["worktree"] = f"{wt.path} (branch {wt.branch} from {wt.base[:12]})"
        if wt.diffstat is not None:
            d = wt.diffstat
            fields["changes"] = (
                f"{d.files} file(s), +{d.insertions} -{d.deletions}, {d.commits} commit(s), "
                + ("dirty" if wt.dirty else "clean")
            )
    for key, value in fields.items():
        print(f"{key + ':':<10}{value}")
    print("--- output ---")
    sys.stdout.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)


def _timeout_text(info: JobInfo) -> str:
    if not info.timeout:
        return "none"
    if info.timeout_silence is None:
        return f"{info.timeout:g}s ({info.timeout_basis})"
    quiet = f"{info.timeout_silence:g}s"
    return f"{info.timeout:g}s, then only after {quiet} without output ({info.timeout_basis})"


@history_app.command("stats")
def history_stats(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None, typer.Argument(help="A command; its signature is looked up.")
    ] = None,
    claude: Annotated[
        bool, typer.Option("--claude", help="Claude cost and tokens per day and session, and the budgets.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="With --claude: jobs queued since: 2h, 7d.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Count, p50, p95, success rate and the timeout estimate per command signature."""
    if claude:
        from ccxctl.render import usage_tables

        query = HistoryParams(since=parse_since(since) if since else None, limit=10_000)

        async def work(c: Client) -> tuple[JobList, ClaudeBudget]:
            return await c.call("history.list", query), await c.call("claude.budget", EmptyParams())

        listed, budget = cli.with_client(ctx, work)
        usage_tables(listed.jobs, json_out, budget)
        return
    params = StatsParams(command=" ".join(command) if command else None)
    res: StatsResult = cli.with_client(ctx, lambda c: c.call("history.stats", params))
    if json_out:
        emit_json(res.signatures)
        return

    def secs(v: float | None) -> str:
        return "-" if v is None else human_duration(v)

    table(
        ["signature", "runs", "success", "timeouts", "p50", "p95", "timeout estimate"],
        [
            [
                s.signature,
                str(s.count),
                f"{s.success_rate * 100:.0f}%",
                str(s.timeouts),
                secs(s.p50),
                secs(s.p95),
                f"{secs(s.estimate)} ({s.basis})",
            ]
            for s in res.signatures
        ],
    )


@history_app.command("prune")
def history_prune(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option(help="Remove finished jobs older than: 30d, 12h.")] = None,
    keep: Annotated[int | None, typer.Option(help="Keep at most this many finished jobs.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove old finished jobs and their output (defaults: the retention settings)."""
    age = time.time() - parse_since(older_than) if older_than else None
    res: PruneResult = cli.with_client(
        ctx, lambda c: c.call("history.prune", PruneParams(older_than=age, keep=keep))
    )
    if json_out:
        emit_json(res)
    else:
        print(f"removed {res.removed} jobs")


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many sessions.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Sessions by last activity."""
    res: SessionList = cli.with_client(ctx, lambda c: c.call("session.list", SessionListParams(limit=limit)))
    if json_out:
        emit_json(res.sessions)
        return
    table(
        ["name", "jobs", "created", "last active"],
        [
            [
                s.name,
                str(s.jobs),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_active)),
            ]
            for s in res.sessions
        ],
    )


@sessions_app.command("show")
def sessions_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Session name.")],
    json_out: JsonOpt = False,
) -> None:
    """One session and its jobs."""
    res: SessionDetail = cli.with_client(ctx, lambda c: c.call("session.get", SessionRef(name)))
    if json_out:
        emit_json(res)
        return
    print(f"session {res.session.name}: {res.session.jobs} jobs")
    table(*job_rows(res.jobs))
