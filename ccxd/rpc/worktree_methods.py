"""The handlers of ``worktree.list``, ``worktree.diff``, ``worktree.rm`` and ``worktree.prune``.

Thin calls into the supervisor's :class:`~ccxd.worktree.manager.Worktrees`.
"""

from __future__ import annotations

from collections.abc import Callable

from ccxd.protocol import (
    EmptyParams,
    JobRef,
    WorktreeDiff,
    WorktreeList,
    WorktreePruneResult,
    WorktreeRmParams,
    WorktreeRmResult,
)
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.supervision.supervisor import Supervisor

__all__ = ["register_worktree_methods"]


def register_worktree_methods(dispatcher: Dispatcher, sup: Supervisor) -> None:
    """Register the worktree methods on ``dispatcher``."""
    trees = sup.worktrees

    async def list_trees(p: EmptyParams, conn: Connection) -> WorktreeList:
        return WorktreeList(worktrees=await trees.list())

    async def diff(p: JobRef, conn: Connection) -> WorktreeDiff:
        return await trees.diff(p.job_id)

    async def remove(p: WorktreeRmParams, conn: Connection) -> WorktreeRmResult:
        return await trees.remove(p.job_id, force=p.force)

    async def prune(p: EmptyParams, conn: Connection) -> WorktreePruneResult:
        c = sup.config
        return await trees.prune(c.worktree_keep_days, c.worktree_remove_merged)

    table: dict[str, Callable[..., object]] = {
        "worktree.list": list_trees,
        "worktree.diff": diff,
        "worktree.rm": remove,
        "worktree.prune": prune,
    }
    for name, handler in table.items():
        dispatcher.register(name, handler)  # type: ignore[arg-type]
