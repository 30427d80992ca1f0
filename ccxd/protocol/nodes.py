"""The nodes of a fleet: names, labels, :class:`NodeInfo` and the ``node.*`` methods' params and results.

Several daemons sharing one Redis (``fleet = true``) are one service; each is a
node with a name, labels that ``job.start`` ``where`` matches, and slots
(docs/fleet-design.md).  A daemon outside fleet mode is a fleet of one.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import Meta, Struct

__all__ = [
    "LABEL_PATTERN",
    "MAX_LABELS",
    "NODE_NAME_PATTERN",
    "Label",
    "Labels",
    "NodeInfo",
    "NodeList",
    "NodeName",
    "NodeRef",
    "NodeState",
]

NODE_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NodeName = Annotated[str, Meta(pattern=NODE_NAME_PATTERN)]
"""A node: a letter or digit, then letters, digits, ``_.-``; up to 64 characters (a host name fits)."""

LABEL_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,63}$"
MAX_LABELS: Final = 32
Label = Annotated[str, Meta(pattern=LABEL_PATTERN)]
"""A label's key or value: 1 to 63 letters, digits or ``_.-``."""
Labels = Annotated[dict[Label, Label], Meta(max_length=MAX_LABELS)]
"""Labels of a node (``node_labels``), or those a job needs (``job.start`` ``where``): at most 32."""

NodeState = Literal["up", "draining", "cordoned", "lost"]
"""``up`` takes jobs; ``draining`` finishes its running jobs and takes no new ones; ``cordoned``
takes no new ones (its running jobs go on, it may go back ``up``); ``lost`` missed its lease."""


class NodeInfo(Struct, kw_only=True):
    """One node of the fleet, as its last heartbeat (or the reaper) left it."""

    name: str
    labels: dict[str, str] = {}
    slots: int = 0
    """Jobs it runs at once (``node_slots``, or ``max_concurrent_jobs``)."""
    used: int = 0
    """Jobs it runs now."""
    load: float = 0.0
    """Its 1-minute load average per CPU."""
    version: str = ""
    """Its ccxd version."""
    heartbeat: float = 0.0
    """When it last said it was alive (epoch seconds)."""
    state: NodeState = "up"
    incarnation: int = 0
    """Grows each time the node (re)joins the fleet; a node declared ``lost`` rejoins with a new one."""


class NodeList(Struct):
    """``node.list`` result: every node the fleet knows, by name."""

    nodes: list[NodeInfo]


class NodeRef(Struct, forbid_unknown_fields=True):
    """Names one node (``node.drain``, ``node.cordon``, ``node.uncordon``)."""

    name: NodeName
