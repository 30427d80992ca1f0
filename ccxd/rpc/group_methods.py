"""The handlers of ``group.list`` and ``group.set``: the supervisor's queue groups.

Changes made here last until the daemon stops (the config's ``groups`` are read
again at start and on reload).
"""

from __future__ import annotations

from collections.abc import Callable

from ccxd.protocol import EmptyParams, GroupInfo, GroupList, GroupSetParams
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.supervision.supervisor import Supervisor

__all__ = ["register_group_methods"]


def register_group_methods(dispatcher: Dispatcher, sup: Supervisor) -> None:
    """Register the group methods on ``dispatcher``."""

    def describe(name: str) -> GroupInfo:
        rule = sup.queue.group(name)
        configured = sup.config.groups.get(name)
        if rule.override is not None:
            source = "runtime"
        elif configured is not None and configured.parallel is not None:
            source = "config"
        elif sup.gate.group_rule(name) is not None:
            source = "implicit"
        else:
            source = "jobs"
        return GroupInfo(
            name=name,
            parallel=rule.limit,
            paused=rule.paused,
            running=rule.running,
            queued=rule.queued,
            source=source,  # type: ignore[arg-type]
        )

    async def list_groups(p: EmptyParams, conn: Connection) -> GroupList:
        names = set(sup.config.groups)
        for name, rule in sup.queue.groups.items():
            busy = rule.running or rule.queued or rule.paused
            if busy or rule.override is not None or sup.gate.group_rule(name) is not None:
                names.add(name)
        return GroupList(groups=[describe(name) for name in sorted(names)])

    async def set_group(p: GroupSetParams, conn: Connection) -> GroupInfo:
        rule = sup.queue.group(p.name)
        if p.parallel is not None:
            rule.override = p.parallel or None
        if p.paused is not None:
            rule.paused = p.paused
        sup.start_ready()  # a larger limit or a resume lets queued jobs start now
        return describe(p.name)

    table: dict[str, Callable[..., object]] = {"group.list": list_groups, "group.set": set_group}
    for name, handler in table.items():
        dispatcher.register(name, handler)  # type: ignore[arg-type]
