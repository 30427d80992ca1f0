"""Queue groups (``ccxctl group …``) and ``ccxctl wait``."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import describe_outcome, emit_json, table
from ccxd.client import Client
from ccxd.protocol import (
    EmptyParams,
    GroupInfo,
    GroupList,
    GroupSetParams,
    JobInfo,
    JobState,
)

__all__ = ["group_app", "wait"]

group_app = typer.Typer(
    help="Queue groups: how many of a group's jobs run at once, pause and resume.", no_args_is_help=True
)


def _group_rows(groups: list[GroupInfo]) -> None:
    rows = [
        [
            g.name,
            str(g.parallel) if g.parallel is not None else "-",
            "paused" if g.paused else "-",
            str(g.running),
            str(g.queued),
            g.source,
        ]
        for g in groups
    ]
    table(["group", "parallel", "paused", "running", "queued", "limit from"], rows)


@group_app.command("list")
def group_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Groups: their parallel limit, whether paused, jobs running and queued."""
    res: GroupList = cli.with_client(ctx, lambda c: c.call("group.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    _group_rows(res.groups)


def _group_set(ctx: typer.Context, params: GroupSetParams, json_out: bool) -> None:
    info: GroupInfo = cli.with_client(ctx, lambda c: c.call("group.set", params))
    if json_out:
        emit_json(info)
        return
    _group_rows([info])


@group_app.command("set")
def group_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    parallel: Annotated[
        int, typer.Option(help="Its jobs running at once at most (0: back to the configured limit).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Change a group's parallel limit until the daemon stops (the config's groups set it at start)."""
    _group_set(ctx, GroupSetParams(name=name, parallel=parallel), json_out)


@group_app.command("pause")
def group_pause(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")], json_out: JsonOpt = False
) -> None:
    """Hold the group's queued jobs (its running jobs go on)."""
    _group_set(ctx, GroupSetParams(name=name, paused=True), json_out)


@group_app.command("resume")
def group_resume(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")], json_out: JsonOpt = False
) -> None:
    """Let the group's queued jobs start again."""
    _group_set(ctx, GroupSetParams(name=name, paused=False), json_out)


def wait(
    ctx: typer.Context,
    jobs: Annotated[list[str] | None, typer.Argument(help="Job ids.")] = None,
    group: Annotated[
        str | None, typer.Option(help="Also every job of this group queued or running now.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 124).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait until the jobs end; print how each ended; exit with the worst of their exit codes."""
    from ccxctl.runjob import EX_TIMEOUT, exit_code_for

    ids = list(dict.fromkeys(jobs or []))
    if not ids and group is None:
        raise typer.BadParameter("name job ids, or --group NAME", param_hint="JOBS")

    async def work(client: Client) -> tuple[list[JobInfo], list[str]]:
        if group is not None:
            listed = await client.list(limit=10_000)
            ids.extend(
                j.id
                for j in reversed(listed)
                if j.group == group and j.id not in ids and j.state != JobState.FINISHED
            )
            sys.stderr.write(f"ccxctl: waiting for {len(ids)} job(s): {' '.join(ids)}\n")
            sys.stderr.flush()
        tasks = {job_id: asyncio.ensure_future(client.wait(job_id)) for job_id in ids}
        ended: list[JobInfo] = []
        if tasks:
            pending = set(tasks.values())
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            while pending:
                left = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
                done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    info = task.result()
                    ended.append(info)
                    if not json_out:
                        print(f"{info.id}\t{describe_outcome(info)}", flush=True)
            for task in pending:
                task.cancel()
        finished = {info.id for info in ended}
        return ended, [job_id for job_id in ids if job_id not in finished]

    ended, still = cli.with_client(ctx, work)
    if json_out:
        emit_json(ended)
    if still:
        sys.stderr.write(f"ccxctl: still not ended after {timeout:g}s: {' '.join(still)}\n")
        raise typer.Exit(EX_TIMEOUT)
    raise typer.Exit(max((exit_code_for(info) for info in ended), default=0))
