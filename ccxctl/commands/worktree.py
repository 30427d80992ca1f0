"""``ccxctl worktree …``: the git worktrees of jobs started with ``--worktree``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_json, table
from ccxd.protocol import (
    EmptyParams,
    JobRef,
    WorktreeDiff,
    WorktreeList,
    WorktreePruneResult,
    WorktreeRmParams,
    WorktreeRmResult,
)

__all__ = ["worktree_app"]

worktree_app = typer.Typer(
    help="Git worktrees of jobs started with --worktree: list, diff, remove.", no_args_is_help=True
)


@worktree_app.command("list")
def worktree_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Jobs' worktrees: branch, path, whether running, dirty (uncommitted changes) or merged."""
    res: WorktreeList = cli.with_client(ctx, lambda c: c.call("worktree.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return

    def flag(value: bool | None, yes: str, no: str) -> str:
        return "?" if value is None else yes if value else no

    rows = [
        [
            w.job_id,
            w.branch,
            "running" if w.running else "gone" if not w.exists else flag(w.dirty, "dirty", "clean"),
            flag(w.merged, "merged", "-"),
            w.path,
        ]
        for w in res.worktrees
    ]
    table(["job", "branch", "tree", "merged", "path"], rows)


@worktree_app.command("diff")
def worktree_diff(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """The job's changes against its base commit: commits, uncommitted and untracked files, one patch."""
    res: WorktreeDiff = cli.with_client(ctx, lambda c: c.call("worktree.diff", JobRef(job)))
    if json_out:
        emit_json(res)
        return
    sys.stdout.write(res.diff)
    if res.truncated:
        sys.stderr.write("ccxctl: the diff was cut at 512 KiB (git -C PATH diff BASE shows it all)\n")


@worktree_app.command("rm")
def worktree_rm(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Also with uncommitted changes, and an unmerged branch.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove the job's worktree and its branch (refused with uncommitted changes unless --force)."""
    params = WorktreeRmParams(job_id=job, force=force)
    res: WorktreeRmResult = cli.with_client(ctx, lambda c: c.call("worktree.rm", params))
    if json_out:
        emit_json(res)
        return
    print(f"{job}: worktree removed" + (", branch deleted" if res.branch_deleted else ""))
    if res.note:
        print(res.note)


@worktree_app.command("prune")
def worktree_prune(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Apply the cleanup policy now (worktree_keep_days, worktree_remove_merged), as each minute does."""
    res: WorktreePruneResult = cli.with_client(ctx, lambda c: c.call("worktree.prune", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    for job_id in res.removed:
        print(f"{job_id}\tremoved")
    for job_id, why in res.kept.items():
        print(f"{job_id}\tkept: {why}")
