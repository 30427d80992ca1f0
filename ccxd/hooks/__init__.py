"""Hooks that always run: before a job starts, after it exits, and when it fails.

Hook authors need only :class:`HookContext`, :class:`HookResult`, :class:`Hook`
and :class:`~ccxd.protocol.HookMatch`::

    from ccxd.hooks import HookContext, HookResult

    async def no_rm_rf(ctx: HookContext) -> HookResult | None:
        if "rm -rf /" in str(ctx.command):
            return HookResult.deny("not here")
        return None

    HOOKS = {"pre_execution": [no_rm_rf]}

See ``docs/architecture.md`` (Hooks) for the points, policies and order.
"""

from __future__ import annotations

from ccxd.hooks.context import HookContext, HookResult, OutputSummary
from ccxd.hooks.spec import Hook
from ccxd.protocol import HookMatch

__all__ = ["Hook", "HookContext", "HookMatch", "HookResult", "OutputSummary"]
