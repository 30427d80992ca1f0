"""The handlers of ``hooks.list`` and ``hooks.test``: thin calls into the hook runner."""

from __future__ import annotations

from collections.abc import Callable

from ccxd.hooks.runner import HookRunner
from ccxd.protocol import EmptyParams, HookList, HookTestParams, HookTestResult
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher

__all__ = ["register_hook_methods"]


def register_hook_methods(dispatcher: Dispatcher, runner: HookRunner) -> None:
    """Register the hook methods on ``dispatcher``."""

    async def list_hooks(p: EmptyParams, conn: Connection) -> HookList:
        return runner.describe()

    async def test_hook(p: HookTestParams, conn: Connection) -> HookTestResult:
        return await runner.test(p)

    table: dict[str, Callable[..., object]] = {"hooks.list": list_hooks, "hooks.test": test_hook}
    for name, handler in table.items():
        dispatcher.register(name, handler)  # type: ignore[arg-type]
