"""Acting on jobs: ``ps``, ``cancel``, ``pause``, ``resume``, ``signal``, ``top``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import describe_outcome, emit_json, job_rows, table
from ccxd.client import Client
from ccxd.protocol import (
    JobInfo,
    JobState,
)

__all__ = ["CANCEL_WAIT", "cancel", "pause", "ps", "resume", "signal_cmd", "top"]


def ps(
    ctx: typer.Context,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Include finished jobs.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    node: Annotated[str | None, typer.Option(help="Only the jobs of this fleet node.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List jobs: queued, running and paused ones (all with --all), newest first."""
    finished: list[int] = []

    async def work(client: Client) -> list[JobInfo]:
        jobs = await client.list(limit=limit if all_jobs else 10_000, node=node)
        if not all_jobs:
            finished.append(sum(j.state == JobState.FINISHED for j in jobs))
            jobs = [j for j in jobs if j.state != JobState.FINISHED][:limit]
        return jobs

    jobs = cli.with_client(ctx, work)
    if json_out:
        emit_json(jobs)
        return
    table(*job_rows(jobs))
    if not jobs and finished and finished[0]:
        n = finished[0]
        print(f"(nothing queued or running; {n} finished job{'s' if n != 1 else ''}: ccxctl ps --all)")


def _job_action(ctx: typer.Context, call: Callable[[Client], Awaitable[JobInfo]], json_out: bool) -> None:
    info = cli.with_client(ctx, call)
    if json_out:
        emit_json(info)
    else:
        print(f"{info.id}\t{info.state}\t{describe_outcome(info)}")


def cancel(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Cancel a job: SIGTERM to its whole tree, SIGKILL after the grace period; print how it ended."""

    async def work(client: Client) -> JobInfo:
        info = await client.cancel(job)
        if info.state == JobState.FINISHED:
            return info
        try:  # the tree gets kill_grace to go after SIGTERM, then SIGKILL: it ends soon
            return await asyncio.wait_for(client.wait(job), CANCEL_WAIT)
        except TimeoutError:
            return await client.get(job)

    _job_action(ctx, work, json_out)


CANCEL_WAIT = 60.0
"""Seconds ``cancel`` waits for the job's end before it prints the state as it is."""


def pause(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Pause a job (SIGSTOP to every process of it)."""
    _job_action(ctx, lambda c: c.pause(job), json_out)


def resume(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Resume a paused job (SIGCONT)."""
    _job_action(ctx, lambda c: c.resume(job), json_out)


def signal_cmd(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    sig: Annotated[str, typer.Argument(metavar="SIGNAL", help="Name (TERM, SIGUSR1) or number.")],
    json_out: JsonOpt = False,
) -> None:
    """Send a signal to every process of a job."""
    _job_action(ctx, lambda c: c.signal(job, sig), json_out)


def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1)] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print the table once and exit.")] = False,
) -> None:
    """Running jobs and their CPU, memory (and peak), limits, processes and IO, live."""
    from ccxctl.top import run_top

    with contextlib.suppress(KeyboardInterrupt):
        cli.with_client(ctx, lambda c: run_top(c, interval, once))
