"""The handler of ``claude.budget``: what Claude jobs cost today and this month, against the budgets."""

from __future__ import annotations

import time

from ccxd.claude.budget import Budgets
from ccxd.protocol import ClaudeBudget, EmptyParams
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher

__all__ = ["register_claude_methods"]


def register_claude_methods(dispatcher: Dispatcher, budgets: Budgets) -> None:
    """Register the Claude methods on ``dispatcher``."""

    async def claude_budget(p: EmptyParams, conn: Connection) -> ClaudeBudget:
        return budgets.info(time.time())

    dispatcher.register("claude.budget", claude_budget)
