"""Which node may run a job, a priority's queue, and the rules of a node's state (no I/O)."""

from __future__ import annotations

from typing import Final

from ccxd.fleet.keys import Bucket
from ccxd.protocol.nodes import NodeState

__all__ = [
    "HIGH_AT",
    "LOW_AT",
    "SETTABLE",
    "bucket",
    "effective_state",
    "matches",
    "mismatch",
    "parse_state",
    "rejoin_state",
    "takes_jobs",
]

HIGH_AT: Final = 5
"""A numeric priority at or above this is queued ``high``."""
LOW_AT: Final = -5
"""A numeric priority at or below this is queued ``low``."""

SETTABLE: Final[frozenset[str]] = frozenset({"up", "draining", "cordoned"})
"""The states an operator may give a node (``lost`` is the reaper's)."""


def bucket(priority: str | int) -> Bucket:
    """The queue of a ``job.start`` priority: a name, or a number (≥ 5 high, ≤ -5 low) (no I/O)."""
    if isinstance(priority, str):
        if priority in ("high", "normal", "low"):
            return priority  # type: ignore[return-value]  # checked just above
        raise ValueError(f"unknown priority {priority!r} (high, normal, low or a number)")
    if priority >= HIGH_AT:
        return "high"
    if priority <= LOW_AT:
        return "low"
    return "normal"


def takes_jobs(state: str) -> bool:
    """Whether a node in ``state`` claims new jobs: only ``up`` (no I/O)."""
    return state == "up"


def mismatch(name: str, labels: dict[str, str], state: str, where: dict[str, str], pin: str | None) -> str:
    """Why node ``name`` may not run a job with ``where`` and ``pin``, in words; "" when it may (no I/O)."""
    if pin is not None and pin != name:
        return f"the job is pinned to node {pin!r}"
    if not takes_jobs(state):
        return f"node {name!r} is {state}"
    for key, want in sorted(where.items()):
        have = labels.get(key)
        if have is None:
            return f"node {name!r} has no label {key!r}"
        if have != want:
            return f"node {name!r} has {key}={have!r}, the job needs {want!r}"
    return ""


def matches(name: str, labels: dict[str, str], state: str, where: dict[str, str], pin: str | None) -> bool:
    """Whether node ``name`` (its labels, its state) may run a job with ``where`` and ``pin`` (no I/O)."""
    return not mismatch(name, labels, state, where, pin)


def parse_state(stored: str | None) -> tuple[int, NodeState]:
    """``"<incarnation> <state>"`` as kept in ``fleet:state`` (no I/O); an unknown node is ``(0, "lost")``."""
    if not stored:
        return 0, "lost"
    inc, _, state = stored.partition(" ")
    if state not in ("up", "draining", "cordoned", "lost"):
        return int(inc or 0), "lost"
    return int(inc), state  # type: ignore[return-value]  # checked just above


def effective_state(stored: NodeState, heartbeat_ms: int, now_ms: int, lease_ms: int) -> NodeState:
    """A node's state as ``node.list`` shows it: ``lost`` once its lease ran out, reaped or not (no I/O)."""
    if now_ms - heartbeat_ms > lease_ms:
        return "lost"
    return stored


def rejoin_state(previous: NodeState) -> NodeState:
    """A node's state when it (re)joins with a new incarnation: a drain or cordon stays (no I/O)."""
    return previous if previous in ("draining", "cordoned") else "up"
