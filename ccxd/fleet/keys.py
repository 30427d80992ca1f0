"""Every Redis key a fleet uses (docs/fleet-design.md); nothing else in ``ccxd.fleet`` spells one.

All live under the store's ``PREFIX``; a name someone chose (a node, a job id,
a reply id) enters a key only through :func:`ccxd.store.keys.part`.  The job
hash's name comes from the store (``store.keys.fleet_job``) because the store's
fenced writes read it.
"""

from __future__ import annotations

from typing import Final, Literal

from ccxd.store.keys import PREFIX, fleet_job, part

__all__ = [
    "ALIVE",
    "BUCKETS",
    "CLAUDE_BLOCK",
    "GROUP",
    "JOB_PREFIX",
    "NODES",
    "PARKED",
    "PINNED_PREFIX",
    "RUNNING_PREFIX",
    "STATES",
    "Bucket",
    "control",
    "job",
    "pinned",
    "queue",
    "reply",
    "running",
]

_FLEET = f"{PREFIX}:fleet"

Bucket = Literal["high", "normal", "low"]
BUCKETS: Final[tuple[Bucket, Bucket, Bucket]] = ("high", "normal", "low")
"""Priority streams in the order a dispatcher reads them."""

GROUP: Final = "nodes"
"""The consumer group of every queue stream (a node reads as consumer ``<name>``)."""

PARKED: Final = f"{_FLEET}:parked"
"""ZSET job id → queued ms: jobs no up node matches; requeued when a node joins or changes."""
NODES: Final = f"{_FLEET}:nodes"
"""HASH name → packed NodeInfo as its node last reported it."""
ALIVE: Final = f"{_FLEET}:alive"
"""ZSET name → last heartbeat ms (Redis ``TIME``): the leases."""
STATES: Final = f"{_FLEET}:state"
"""HASH name → ``"<incarnation> <state>"``: up, draining, cordoned or lost (what Lua decides on)."""
CLAUDE_BLOCK: Final = f"{_FLEET}:claude-block"
"""STRING (sealed, PX): a usage limit; no node starts Claude jobs until it expires."""

JOB_PREFIX: Final = fleet_job("")
"""``fleet:job:`` — Lua builds a job's hash from it and the escaped id."""
RUNNING_PREFIX: Final = f"{_FLEET}:running:"
PINNED_PREFIX: Final = f"{_FLEET}:q:node:"

job = fleet_job
"""HASH of one fleet job: spec, state, node, epoch, prio, stream, skipped, … (scripts.py)."""


def queue(bucket: Bucket) -> str:
    """STREAM of the jobs queued at one priority."""
    return f"{_FLEET}:q:{bucket}"


def pinned(node: str) -> str:
    """STREAM of the jobs pinned to ``node``."""
    return PINNED_PREFIX + part(node)


def running(node: str) -> str:
    """SET of the node's claimed, unfinished job ids."""
    return RUNNING_PREFIX + part(node)


def control(node: str) -> str:
    """STREAM of sealed control requests for ``node``."""
    return f"{_FLEET}:ctl:{part(node)}"


def reply(rid: str) -> str:
    """LIST holding a control request's answer (expires after 30 s)."""
    return f"{_FLEET}:reply:{part(rid)}"
