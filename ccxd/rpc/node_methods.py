"""The handlers of ``node.list``, ``node.drain``, ``node.cordon`` and ``node.uncordon``.

They call a :class:`NodeControl`: the fleet's registry in fleet mode
(``ccxd/fleet``), or :class:`SingleNode` outside it.  A lone daemon is a fleet
of one: it lists itself ``up``, and refuses to drain or cordon (``-32602``),
since a node that takes no jobs and has no other node to take them would only
hold them queued; ``daemon.shutdown`` with ``mode: "drain"`` is what drains it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

from ccxd import __version__
from ccxd.config import Config
from ccxd.errors import InvalidRequest, UnknownNode
from ccxd.protocol import EmptyParams, NodeInfo, NodeList, NodeRef, NodeState
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher, Handler

__all__ = ["NodeControl", "SingleNode", "register_node_methods", "single_node"]


class NodeControl(Protocol):
    """What the ``node.*`` methods need of the fleet."""

    async def nodes(self) -> list[NodeInfo]:
        """Every node the fleet knows, by name."""
        ...

    async def set_state(self, name: str, state: NodeState) -> NodeInfo:
        """Put node ``name`` in ``state`` (``draining``, ``cordoned`` or ``up``); the node as it is then.

        Raises :class:`ccxd.errors.UnknownNode` for a name no node has (``-32012``),
        and any :class:`ccxd.errors.JobError` for a change it refuses.
        """
        ...


class SingleNode:
    """The :class:`NodeControl` of a daemon outside fleet mode: this node alone, always ``up``."""

    def __init__(
        self,
        name: str,
        labels: dict[str, str],
        slots: int,
        used: Callable[[], int],
        started: float | None = None,
    ) -> None:
        self.name = name
        self.labels = labels
        self.slots = slots
        self.used = used
        """Jobs running (or paused) now."""
        self.started = time.time() if started is None else started

    def info(self) -> NodeInfo:
        """This node now (its heartbeat is now: it answers)."""
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:  # no load average on this system
            load = 0.0
        return NodeInfo(
            name=self.name,
            labels=dict(self.labels),
            slots=self.slots,
            used=self.used(),
            load=round(load, 2),
            version=__version__,
            heartbeat=time.time(),
            state="up",
            incarnation=1,
        )

    async def nodes(self) -> list[NodeInfo]:
        """This node."""
        return [self.info()]

    async def set_state(self, name: str, state: NodeState) -> NodeInfo:
        """Refused: a node of its own cannot stop taking jobs (see the module's docstring)."""
        if name != self.name:
            raise UnknownNode(name)
        verb = {"draining": "node.drain", "cordoned": "node.cordon"}.get(state, "node.uncordon")
        raise InvalidRequest(
            f"{verb} needs fleet mode (fleet = true): {self.name!r} is a daemon of its own, "
            "always up; `ccxctl shutdown --mode drain` lets its jobs finish and stops it"
        )


def single_node(config: Config, counts: Callable[[], dict[str, int]]) -> SingleNode:
    """This daemon as a fleet of one: name, labels and slots from ``config``; ``counts``: jobs by state."""

    def used() -> int:
        now = counts()
        return sum(now.get(state, 0) for state in ("starting", "running", "paused"))

    return SingleNode(config.resolved_node_name(), config.node_labels, config.resolved_node_slots(), used)


def register_node_methods(dispatcher: Dispatcher, control: NodeControl) -> None:
    """Serve the ``node.*`` methods on ``dispatcher`` from ``control``."""

    async def list_nodes(p: EmptyParams, conn: Connection) -> NodeList:
        return NodeList(nodes=sorted(await control.nodes(), key=lambda n: n.name))

    def setter(state: NodeState) -> Handler:
        async def handler(p: NodeRef, conn: Connection) -> NodeInfo:
            return await control.set_state(p.name, state)

        return handler

    dispatcher.register("node.list", list_nodes)
    dispatcher.register("node.drain", setter("draining"))
    dispatcher.register("node.cordon", setter("cordoned"))
    dispatcher.register("node.uncordon", setter("up"))
