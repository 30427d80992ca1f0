"""The fleet's nodes: heartbeats (leases on Redis time), states an operator sets, and the reaper.

A node renews its lease every ``node_lease / 5`` with :meth:`NodeRegistry.heartbeat`,
which also stores what it reports (labels, slots, load).  A node silent for a
whole lease is ``lost``: :meth:`NodeRegistry.reap` (any node may run it) fences
and settles its jobs, and the node's next heartbeat in that incarnation answers
``lost`` — it must stop its fleet jobs and rejoin with a new incarnation.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis

from ccxd.fleet import keys
from ccxd.fleet.placement import SETTABLE, effective_state, parse_state
from ccxd.fleet.scripts import Heartbeat, Reaped, Scripts, text
from ccxd.protocol.nodes import NodeInfo, NodeState

__all__ = ["NodeLost", "NodeRegistry", "UnknownNode"]

log = logging.getLogger("ccxd.fleet")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(NodeInfo)


class UnknownNode(LookupError):
    """No node of this name ever joined the fleet."""


class NodeLost(ValueError):
    """The node is lost: only its own return (a new incarnation) brings it back."""


class NodeRegistry:
    """Nodes and their leases on one Redis; ``lease_ms`` is how long a node may stay silent."""

    def __init__(self, redis: aioredis.Redis, lease_ms: int) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.scripts = Scripts(redis)

    async def new_incarnation(self, name: str) -> int:
        """An incarnation for ``name`` to (re)join with, greater than any it had (Redis time in µs)."""
        return await self.scripts.new_incarnation(name)

    async def heartbeat(self, info: NodeInfo) -> Heartbeat:
        """Renew ``info.name``'s lease in ``info.incarnation`` and store what it reports.

        ``ok``; ``joined`` for a new incarnation (the caller requeues parked jobs);
        ``lost`` when the reaper declared this incarnation lost (nothing is
        stored: the node stops its fleet jobs and rejoins with a new incarnation).
        The reported ``state`` and ``heartbeat`` are ignored: Redis keeps those.
        """
        return await self.scripts.heartbeat(info.name, info.incarnation, _encoder.encode(info))

    async def leave(self, name: str, incarnation: int) -> bool:
        """A clean stop: ``name`` leaves the registry unless it is drained, cordoned or holds claims."""
        return await self.scripts.leave(name, incarnation)

    async def nodes(self) -> list[NodeInfo]:
        """Every node that ever joined, by name; ``lost`` for one whose lease ran out, reaped or not."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.NODES)
        pipe.hgetall(keys.STATES)
        pipe.zrange(keys.ALIVE, 0, -1, withscores=True)
        pipe.time()
        reported, states, alive, now = await pipe.execute()
        return self._assemble(reported, states, alive, now)

    async def node(self, name: str) -> NodeInfo | None:
        """One node as :meth:`nodes` shows it (None if it never joined)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.NODES, name)
        pipe.hget(keys.STATES, name)
        pipe.zscore(keys.ALIVE, name)
        pipe.time()
        raw, state, score, now = await pipe.execute()
        if raw is None:
            return None
        nodes = self._assemble({name: raw}, {name: state} if state else {}, [(name, score or 0)], now)
        return nodes[0] if nodes else None

    def _assemble(
        self, reported: dict[Any, Any], states: dict[Any, Any], alive: list[Any], now: Any
    ) -> list[NodeInfo]:
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        beats = {text(name): int(score) for name, score in alive}
        stored = {text(k): text(v) for k, v in states.items()}
        out: list[NodeInfo] = []
        for raw_name, raw in reported.items():
            name = text(raw_name)
            try:
                info = _decoder.decode(raw)
            except msgspec.DecodeError:
                log.warning("node %s: its stored NodeInfo is unreadable; not listed", name)
                continue
            inc, state = parse_state(stored.get(name))
            beat = beats.get(name, 0)
            out.append(
                msgspec.structs.replace(
                    info,
                    name=name,
                    incarnation=inc or info.incarnation,
                    heartbeat=beat / 1000,
                    state=effective_state(state, beat, now_ms, self.lease_ms),
                )
            )
        return sorted(out, key=lambda n: n.name)

    async def set_state(self, name: str, state: NodeState) -> NodeInfo:
        """Drain, cordon or uncordon (``up``) a node; :class:`UnknownNode`, :class:`NodeLost`.

        The caller requeues parked jobs after ``up`` (the node takes jobs again).
        """
        if state not in SETTABLE:
            raise ValueError(f"a node cannot be set {state!r} (up, draining or cordoned)")
        result = await self.scripts.set_state(name, state)
        if result == "unknown":
            raise UnknownNode(f"no node {name!r} in the fleet")
        if result == "lost":
            raise NodeLost(f"node {name!r} is lost; it comes back only by rejoining")
        info = await self.node(name)
        if info is None:
            raise UnknownNode(f"no node {name!r} in the fleet")
        return info

    async def reap(self, *, may_reap: bool) -> list[Reaped]:
        """Declare every node silent for a whole lease ``lost`` and settle its jobs (one script each).

        Each job it ran is fenced (its epoch grows, so the lost run's late writes are
        refused), its record finished as ``lost`` with its output kept, and run again
        (an entry on its queue with ``retry_of``) when it allows it.  Pass ``may_reap``
        true only once this node has been connected to this Redis for a full lease
        itself: after a failover or an outage every lease looks run out until the
        nodes' next heartbeats.  Returns what it did, for the log.
        """
        if not may_reap:
            return []
        done: list[Reaped] = []
        for name in await self.scripts.stale(self.lease_ms):
            reaped = await self.scripts.reap_node(name, self.lease_ms)
            log.warning(
                "node %s is lost (no heartbeat for %.1f s): %s",
                name,
                self.lease_ms / 1000,
                ", ".join(f"{r.job_id} {r.outcome}" for r in reaped) or "no running jobs",
            )
            done += reaped
        return done
