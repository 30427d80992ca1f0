"""The fleet in the daemon: this node's heartbeat, reaper, dispatcher and control.

Started only with ``fleet = true`` (docs/fleet-design.md).  The primitives it
puts to work are the other modules of ``ccxd.fleet``; this file decides when:

* the heartbeat renews this node's lease every ``node_lease / 5``, learns the
  node's state (an operator may drain or cordon it from any node) and the
  fleet's up nodes; a heartbeat that answers ``lost`` (the fleet gave this
  node's jobs up) kills the fleet jobs still running here and rejoins with a
  new incarnation.  A node that cannot renew its lease for a whole lease stops
  its re-runnable jobs itself: another node runs them again.
* the reaper (once connected for a full lease) declares silent nodes lost;
* the dispatcher claims jobs while this node is ``up`` with a free slot and
  admits each to the local supervisor under the id it was submitted with
  (hooks, cgroups, the Claude retry as for any job); the job's end is told
  back (``finish``);
* the control server answers other nodes' ``cancel``/``signal``/``pause``/
  ``resume``/``stats`` for the jobs this node runs.

The jobs this daemon does not run are served to its clients by
``service_jobs.FleetJobs`` (``self.jobs``); this class serves the ``node.*``
methods (``NodeControl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, Final, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ccxd import __version__
from ccxd.config import Config
from ccxd.errors import InvalidRequest, JobError, UnknownNode
from ccxd.fleet.claude_block import ClaudeBlock, current_block, publish_block
from ccxd.fleet.control import ControlChannel
from ccxd.fleet.queue import Claimed, FleetQueue
from ccxd.fleet.registry import NodeLost, NodeRegistry
from ccxd.fleet.registry import UnknownNode as FleetUnknownNode
from ccxd.fleet.service_jobs import FleetJobs, guarded, queued_record, verb_decoder
from ccxd.jobs.job import Job
from ccxd.jobs.lifecycle import LifecycleObserver
from ccxd.protocol import (
    JobInfo,
    JobReason,
    JobState,
    NodeInfo,
    NodeState,
    StartParams,
)
from ccxd.store.base import Store, StoreUnavailable
from ccxd.store.connect import open_redis
from ccxd.supervision.ids import new_job_id
from ccxd.supervision.supervisor import Supervisor

__all__ = ["Fleet"]

log = logging.getLogger("ccxd.fleet")

_BLOCK_MS: Final = 1000
"""Longest wait of the dispatcher's XREADGROUP (it also looks at its state and slots this often)."""
_NO_CLAIM: Final = -1
"""The epoch of a job this node no longer holds: it matches no claim, so the store refuses its writes."""

_info_json = msgspec.json.Encoder()





class ClaudeHold(Protocol):
    """The local Claude gate's usage-limit block (``claude/gate.py`` ``ClaudeGate``)."""

    block_until: float | None
    block_reason: str

    def block(self, until: float, reason: str = ...) -> None:
        """Hold every Claude job until ``until``; a later block wins."""


class Fleet(LifecycleObserver):
    """This daemon as one node of a fleet (see the module's docstring)."""

    def __init__(
        self, config: Config, sup: Supervisor, store: Store, key: bytes, claude: ClaudeHold | None = None
    ) -> None:
        self.config = config
        self.claude = claude
        """The local Claude gate: a usage limit it blocks for holds every node's Claude jobs."""
        self._published_block = 0.0
        self.sup = sup
        self.store = store
        self.key = key
        self.name = config.resolved_node_name()
        self.labels = dict(config.node_labels)
        self.slots = config.resolved_node_slots()
        self.lease_ms = int(config.node_lease * 1000)
        self.state: NodeState = "up"
        self.incarnation = 0
        self.running: dict[str, int] = {}
        """Fleet jobs claimed here and not finished → the epoch of the claim."""
        self.rerunnable: set[str] = set()
        """Of those, the ones the fleet runs again when this node is lost (self-stopped then)."""
        self.submitted: dict[str, JobInfo] = {}
        """Jobs submitted here and not claimed yet as far as this node knows (``job.list``)."""
        self.nodes_seen: list[NodeInfo] = []
        self._up_nodes: list[str] = []
        self._joined = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._connected_since: float | None = None
        self._last_renewed = time.monotonic()
        self._self_stopped = False
        self._outage_logged = False
        self._last_requeue = 0.0

    # -- start and stop -------------------------------------------------------

    def _client(self, *, blocking: bool, connections: int) -> aioredis.Redis:
        c = self.config
        timeout = max(c.store_timeout, 1.0)
        return open_redis(
            c.redis_url,
            timeout=timeout,
            # A blocking read waits up to 5 s (control) on its own: its answer may take that long.
            socket_timeout=timeout + 6 if blocking else -1.0,
            max_connections=connections,
            tls_ca_file=c.redis_tls_ca_file,
            tls_cert_file=c.redis_tls_cert_file,
            tls_key_file=c.redis_tls_key_file,
        )

    def open(self) -> None:
        """Make the clients (they connect on first use); before the jobs of a previous run are adopted."""
        self.redis = self._client(blocking=False, connections=4)
        """Scripts, records and the registry: short commands."""
        self.blocking = self._client(blocking=True, connections=64)
        """Blocking reads that each hold a connection: control, replies, remote followers."""
        self._dispatch_redis = self._client(blocking=True, connections=1)
        """The dispatcher's XREADGROUP alone."""
        self.queue = FleetQueue(self.redis, self.key, mint_id=new_job_id)
        self._taker = FleetQueue(self._dispatch_redis, self.key, mint_id=new_job_id)
        self.registry = NodeRegistry(self.redis, self.lease_ms)
        self.control_channel = ControlChannel(self.blocking, self.key, sender=self.name)
        self.jobs = FleetJobs(self)
        """The fleet's jobs as this node serves them to its clients."""

    async def fence_adopted(self, job_ids: list[str]) -> None:
        """Before adopting a previous run's jobs: the fleet jobs among them write under their claim.

        A job this node still holds keeps its claim's epoch; one the fleet gave up
        while no daemon ran here (declared lost) gets an epoch no claim has, so
        nothing the adoption writes of it (its spooled output, its record) lands.
        """
        for job_id in job_ids:
            try:
                queued = await self.queue.queued_info(job_id)
            except (RedisError, OSError) as exc:
                log.warning("fleet: cannot tell whether job %s is still this node's: %s", job_id, exc)
                continue
            if queued is None:
                continue  # not a fleet job
            mine = queued.node == self.name and queued.state == "claimed"
            self.sup.fleet_epochs[job_id] = queued.epoch if mine else _NO_CLAIM

    async def start(self) -> None:
        """Join the fleet and start the loops (the daemon's READY waits for the join)."""
        if not hasattr(self, "queue"):
            self.open()
        self.sup.lifecycle.subscribe(self)
        await self._take_back()
        loop = asyncio.get_running_loop()
        serving = asyncio.Event()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="fleet-heartbeat"),
            loop.create_task(self._dispatch_loop(), name="fleet-dispatch"),
            loop.create_task(self._serve_control(serving), name="fleet-control"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.node_lease):
                await self._joined.wait()
                await serving.wait()
        if not self._joined.is_set():
            log.warning("fleet: not joined yet (Redis does not answer); jobs are taken once it does")

    async def stop(self) -> None:
        """Stop claiming and serving; jobs running here end as the daemon's stop mode says."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def close(self) -> None:
        """Tell the fleet the jobs that ended during the stop, then close the clients."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.config.store_timeout + 1)
        if self.incarnation and not self.running:
            # Not shown lost for good after a clean stop (a drained or cordoned node stays).
            with contextlib.suppress(RedisError, OSError):
                if await self.registry.leave(self.name, self.incarnation):
                    log.info("fleet: node %s left the fleet", self.name)
        for client in (self.redis, self.blocking, self._dispatch_redis):
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _take_back(self) -> None:
        """The fleet jobs a previous run of this node claimed: adopted ones go on; the others are done."""
        try:
            claimed = await self.queue.running(self.name)
        except (RedisError, OSError) as exc:
            log.warning("fleet: cannot read this node's claimed jobs: %s", exc)
            return
        for job_id in claimed:
            try:
                queued = await self.queue.queued_info(job_id)
            except (RedisError, OSError):
                continue
            if queued is None or queued.node != self.name:
                continue
            job = self.sup.jobs.get(job_id)
            if job is not None and not job.finished:  # adopted: it runs on, fenced by its claim
                self.running[job_id] = queued.epoch
                self.sup.fleet_epochs[job_id] = queued.epoch
            else:
                await self.queue.finish(job_id, self.name, queued.epoch, "done")
        # Adopted fleet jobs whose claim is gone (the fleet declared this node lost while no
        # daemon ran here): another node may run them again; they are not ours to run on.
        given_up = []
        for job in list(self.sup.active_jobs):
            if job.id in self.running:
                continue
            try:
                queued = await self.queue.queued_info(job.id)
            except (RedisError, OSError):
                continue
            if queued is None:
                continue  # not a fleet job
            # An epoch no claim has: every write of the job is refused from now on (fenced).
            self.sup.fleet_epochs[job.id] = _NO_CLAIM
            given_up.append(job.id)
        if given_up:
            killed = self.sup.kill_lost(given_up)
            log.warning(
                "fleet: killed %d adopted fleet job(s) the fleet gave up while this node was away: %s",
                len(killed),
                ", ".join(j.id for j in killed),
            )

    # -- heartbeat and reaper -------------------------------------------------

    def _info(self) -> NodeInfo:
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            load = 0.0
        return NodeInfo(
            name=self.name,
            labels=self.labels,
            slots=self.slots,
            used=len(self.running),
            load=round(load, 2),
            version=__version__,
            heartbeat=time.time(),
            state=self.state,
            incarnation=self.incarnation,
        )

    async def _heartbeat_loop(self) -> None:
        interval = self.config.node_lease / 5
        while True:
            try:
                await self._beat()
            except (RedisError, OSError, TimeoutError) as exc:
                self._connected_since = None
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning("fleet: cannot reach Redis to renew this node's lease: %s", exc)
            except Exception:  # a bug must not end the heartbeat: the fleet would call this node lost
                log.exception("fleet: heartbeat failed")
            self._check_lease()
            await asyncio.sleep(interval)

    async def _beat(self) -> None:
        if not self.incarnation:
            self.incarnation = await self.registry.new_incarnation(self.name)
        result = await self.registry.heartbeat(self._info())
        now = time.monotonic()
        self._last_renewed = now
        if self._outage_logged:
            self._outage_logged = False
            log.info("fleet: Redis answers again; lease renewed")
        if self._connected_since is None:
            self._connected_since = now
        if result == "lost":
            await self._was_lost()
            return
        if result == "joined":
            self._self_stopped = False
            log.info("fleet: node %s joined (incarnation %d)", self.name, self.incarnation)
            requeued = await self.queue.requeue_parked()
            if requeued:
                log.info("fleet: %d parked job(s) queued again", requeued)
        nodes = await self.registry.nodes()
        self.nodes_seen = nodes
        self._up_nodes = [n.name for n in nodes if n.state == "up"]
        me = next((n for n in nodes if n.name == self.name), None)
        if me is not None and me.state != "lost":
            if me.state != self.state:
                log.info("fleet: node %s is now %s", self.name, me.state)
                self._slot_freed.set()
            self.state = me.state
        if not self._joined.is_set():
            self._joined.set()
            self._slot_freed.set()  # the dispatcher starts claiming now
        await self._share_claude_block()
        if now - self._connected_since >= self.config.node_lease:
            reaped = await self.registry.reap(may_reap=True)
            # Parked jobs are queued again when a node joins or is uncordoned, and here once a
            # lease too: a node that passed a job on a stale view of the up nodes parked it early.
            if reaped or now - self._last_requeue >= self.config.node_lease:
                self._last_requeue = now
                requeued = await self.queue.requeue_parked()
                if requeued:
                    log.info("fleet: %d parked job(s) queued again", requeued)

    async def _share_claude_block(self) -> None:
        """One usage limit holds the account's Claude jobs on every node: publish ours, take the fleet's."""
        gate = self.claude
        if gate is None:
            return
        now = time.time()
        mine = gate.block_until
        if mine is not None and mine > now and mine > self._published_block:
            block = await publish_block(self.redis, self.key, ClaudeBlock(mine, gate.block_reason, self.name))
            self._published_block = block.until
            log.info(
                "fleet: Claude jobs held on every node until %s (%s)", time.ctime(block.until), block.reason
            )
        await self._take_claude_block()

    async def _take_claude_block(self) -> None:
        """Hold this node's Claude jobs for the fleet's usage limit, if one is set."""
        gate = self.claude
        if gate is None:
            return
        fleet_block = await current_block(self.redis, self.key)
        if fleet_block is not None and (gate.block_until is None or fleet_block.until > gate.block_until):
            self._published_block = max(self._published_block, fleet_block.until)
            reason = fleet_block.reason or "usage limit"
            gate.block(fleet_block.until, f"{reason} (hit on node {fleet_block.node})")
            log.info(
                "fleet: Claude jobs held here until %s: node %s hit a usage limit",
                time.ctime(fleet_block.until),
                fleet_block.node,
            )

    async def _was_lost(self) -> None:
        """The fleet declared this incarnation lost: its jobs are another's now; kill ours, rejoin."""
        ids = list(self.running)
        killed = self.sup.kill_lost(ids)
        log.warning(
            "fleet: node %s was declared lost; killed %d fleet job(s) still running here (%s); rejoining",
            self.name,
            len(killed),
            ", ".join(j.id for j in killed) or "none",
        )
        self.running.clear()
        self.rerunnable.clear()
        self.incarnation = await self.registry.new_incarnation(self.name)
        self._joined.clear()
        result = await self.registry.heartbeat(self._info())
        if result == "joined":
            await self.queue.requeue_parked()
        self._joined.set()
        self._slot_freed.set()

    def _check_lease(self) -> None:
        """Past a whole lease without renewal: stop the jobs the fleet runs again elsewhere."""
        if self._self_stopped or time.monotonic() - self._last_renewed < self.config.node_lease:
            return
        ids = [i for i in self.running if i in self.rerunnable]
        self._self_stopped = True
        if ids:
            killed = self.sup.kill_lost(ids)
            log.warning(
                "fleet: lease not renewed for %.1f s: stopped %d re-runnable job(s) (%s); "
                "the fleet runs them again elsewhere",
                self.config.node_lease,
                len(killed),
                ", ".join(j.id for j in killed),
            )

    # -- dispatcher -----------------------------------------------------------

    def free_slots(self) -> int:
        """Fleet jobs this node may claim now."""
        return self.slots - len(self.running)

    async def _dispatch_loop(self) -> None:
        last_stale = 0.0
        while True:
            if not self._joined.is_set() or self.state != "up" or self.free_slots() <= 0:
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.node_lease / 5):
                        await self._slot_freed.wait()
                continue
            try:
                now = time.monotonic()
                if now - last_stale >= self.config.node_lease:
                    last_stale = now
                    await self._taker.take_stale(self.name, self.lease_ms)
                claimed = await self._taker.next(
                    self.name, self.incarnation, self.labels, self._up_nodes or [self.name], _BLOCK_MS
                )
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("fleet dispatcher: %s", exc)
                await asyncio.sleep(self.config.node_lease / 5)
                continue
            except Exception:
                log.exception("fleet dispatcher failed; trying again")
                await asyncio.sleep(self.config.node_lease / 5)
                continue
            if claimed is not None:
                await self._admit(claimed)

    async def _admit(self, claimed: Claimed) -> None:
        """Run a claimed job here as an admitted job under its own id."""
        e = claimed.entry
        job_id = claimed.job_id
        self.running[job_id] = claimed.epoch
        if e.rerunnable:
            self.rerunnable.add(job_id)
        self.submitted.pop(job_id, None)
        peer = e.peer or f"fleet node {e.submitter}"
        if e.params.kind == "claude" or (e.params.kind is None and "claude" in str(e.params.command)):
            # A usage limit set since the last heartbeat holds it too (the gate decides if it is Claude's).
            with contextlib.suppress(RedisError, OSError):
                await self._take_claude_block()
        params = e.params
        resumes = params.resume or params.continue_session
        if e.retry_of is not None and params.kind == "claude" and not resumes:
            params = await self._resumed(params, e.retry_of)
        try:
            origin = (e.queued_at or time.time(), e.retry_of, e.attempt)
            await self.sup.start(params, peer, job_id=job_id, fleet_epoch=claimed.epoch, fleet_origin=origin)
        except JobError as exc:
            log.warning("fleet job %s (from %s) refused here: %s", job_id, e.submitter, exc.message)
            self._refused(claimed, exc.message)
            return
        except Exception:
            log.exception("fleet job %s: cannot start", job_id)
            self._refused(claimed, "internal error starting the job")
            return
        log.debug("fleet job %s claimed (epoch %d) from %s", job_id, claimed.epoch, claimed.stream)

    async def _resumed(self, params: StartParams, lost_id: str) -> StartParams:
        """A Claude job run again after its node was lost goes on with its session, where its cwd is here."""
        try:
            lost = await self.store.get_job(lost_id)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("fleet: job %s: cannot read the lost run's session: %s", lost_id, exc)
            return params
        session = lost.claude.session_id if lost is not None and lost.claude is not None else None
        cwd = params.cwd or (lost.cwd if lost is not None else "")
        if not session or not cwd or not os.path.isdir(cwd):
            return params
        log.info("fleet: job %s lost with its node: run again resuming Claude session %s", lost_id, session)
        return msgspec.structs.replace(params, resume=session)

    def _refused(self, claimed: Claimed, why: str) -> None:
        """A claimed job this node could not start: its record says so, the fleet hears it ended."""
        e = claimed.entry
        now = time.time()
        info = queued_record(e, self.name)
        info = msgspec.structs.replace(
            info, state=JobState.FINISHED, reason=JobReason.FAILED_TO_START, error=why, finished_at=now
        )
        recorder = self.sup.recorder
        if recorder is not None:
            recorder.job_finished(info)
        self._ended(claimed.job_id)

    def job_ended(self, job: Job) -> None:
        """A job reached its end: a fleet job's claim is settled (``finish``) and its slot freed."""
        if job.id in self.running:
            self._ended(job.id)

    def _ended(self, job_id: str) -> None:
        epoch = self.running.pop(job_id, None)
        self.rerunnable.discard(job_id)
        self._slot_freed.set()
        if epoch is None:
            return
        self._spawn(self._finish(job_id, epoch))

    async def _finish(self, job_id: str, epoch: int) -> None:
        # Told until Redis hears it (a restart of this node settles it too: _take_back).
        delay = 0.5
        while True:
            try:
                if not await self.queue.finish(job_id, self.name, epoch, "done"):
                    log.info(
                        "fleet job %s: ended here after its claim moved on (epoch %d); fenced", job_id, epoch
                    )
                break
            except (RedisError, OSError) as exc:
                if delay == 0.5:
                    log.warning("fleet job %s: cannot tell the fleet it ended yet: %s", job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        # Its last record is queued already (it carries the epoch); later ones are hooks' notes.
        asyncio.get_running_loop().call_later(60, self.sup.fleet_epochs.pop, job_id, None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- control of the jobs this node runs -----------------------------------

    async def _serve_control(self, started: asyncio.Event) -> None:
        while True:
            try:
                await self.control_channel.serve(self.name, self._handle, started)
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("fleet control: %s", exc)
                started.set()
                await asyncio.sleep(self.config.node_lease / 5)
            except Exception:
                log.exception("fleet control failed; serving again")
                started.set()
                await asyncio.sleep(self.config.node_lease / 5)

    async def _handle(self, method: str, params: bytes) -> bytes:
        verb = verb_decoder.decode(params)
        sup = self.sup
        if method == "cancel":
            job = sup.cancel(verb.job_id)
        elif method == "signal" and verb.signal is not None:
            job = sup.send_signal(verb.job_id, verb.signal)
        elif method == "pause":
            job = sup.pause(verb.job_id)
        elif method == "resume":
            job = sup.resume(verb.job_id)
        elif method == "get":
            job = sup.get(verb.job_id)
        else:
            raise ValueError(f"unknown control method {method!r}")
        return _info_json.encode(job.info())

    def status_line(self) -> str:
        """``node A up, 1/4 slots used, nodes: 2 up, 1 lost``."""
        states = [n.state for n in self.nodes_seen]
        up = sum(1 for s in states if s != "lost")
        lost = len(states) - up
        joined = "" if self._joined.is_set() else " (not joined: Redis does not answer)"
        return (
            f"node {self.name} {self.state}{joined}, {len(self.running)}/{self.slots} slots used, "
            f"nodes: {up} up, {lost} lost"
        )

    # -- node.* (rpc/node_methods.NodeControl) --------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """Every node the fleet knows."""
        nodes: list[NodeInfo] = await guarded(self.config, self.registry.nodes())
        self.nodes_seen = nodes
        return nodes

    async def set_state(self, name: str, state: NodeState) -> NodeInfo:
        """Drain, cordon or uncordon a node (any node may ask); parked jobs are queued again on ``up``."""
        try:
            info: NodeInfo = await guarded(self.config, self.registry.set_state(name, state))
        except FleetUnknownNode:
            raise UnknownNode(name) from None
        except NodeLost as exc:
            raise InvalidRequest(str(exc)) from None
        if state == "up":
            await guarded(self.config, self.queue.requeue_parked())
        if name == self.name:
            self.state = info.state if info.state != "lost" else self.state
            self._slot_freed.set()
        log.info("fleet: node %s set %s", name, state)
        return info
