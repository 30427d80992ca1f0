"""Params and results of the other methods; :data:`METHODS` maps every method name to its two types."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from ccxd.protocol.common import GroupName
from ccxd.protocol.hooks import CommandMetrics, HookList, HookTestParams, HookTestResult
from ccxd.protocol.job_methods import (
    JobList,
    JobRef,
    ListParams,
    Ok,
    ReadParams,
    ReadResult,
    SignalParams,
    StartParams,
    SubscribeParams,
    SubscribeResult,
)
from ccxd.protocol.jobs import JobInfo
from ccxd.protocol.nodes import NodeInfo, NodeList, NodeRef

__all__ = [
    "METHODS",
    "ClaudeBudget",
    "ClaudeGroupBudget",
    "EmptyParams",
    "GroupInfo",
    "GroupList",
    "GroupSetParams",
    "HistoryParams",
    "HistoryStatus",
    "Listener",
    "PingResult",
    "PruneParams",
    "PruneResult",
    "Refusals",
    "ReloadResult",
    "SessionDetail",
    "SessionInfo",
    "SessionList",
    "SessionListParams",
    "SessionRef",
    "ShutdownParams",
    "ShutdownResult",
    "SignatureStats",
    "StatsParams",
    "StatsResult",
    "StatusResult",
    "StopMode",
    "StoreHealth",
    "UiLoginUrl",
    "WorktreeDiff",
    "WorktreeEntry",
    "WorktreeList",
    "WorktreePruneResult",
    "WorktreeRmParams",
    "WorktreeRmResult",
]


class PingResult(Struct):
    """``daemon.ping`` result."""

    pong: bool
    time: float


class Listener(Struct):
    """One endpoint the daemon accepts connections on."""

    kind: str
    address: str


class StoreHealth(Struct, kw_only=True):
    """``daemon.status``'s ``store_health``: the writes that did not reach the store."""

    refused: int = 0
    """Writes the store refused since the daemon started (a key that holds another type, a
    script error); each is logged with its key, and the rest of its batch was written."""
    last_refused: str | None = None
    """The last refused write: what it was, the store's words and the key at fault."""
    journal_dropped: int = 0
    """Writes lost since the daemon started because the journal was full (``journal_max_bytes``)
    while the store was unreachable; each fill is logged."""
    journal_full: bool = False
    """The journal is full now: writes are being dropped until the store answers."""
    journal_bytes: int = 0
    """Size of the journal being written: writes waiting for the store."""


class Refusals(Struct, kw_only=True):
    """``daemon.status``'s ``refused``: connections turned away since the daemon started, by cause."""

    ws_handshakes: int = 0
    """WebSocket connections closed as accepted: ``ws_handshakes_max`` were not logged in yet."""
    ws_peer: int = 0
    """WebSocket connections closed as accepted: ``ws_handshakes_per_peer`` from that address were
    not logged in yet."""
    ws_descriptors: int = 0
    """WebSocket connections closed as accepted: the descriptors kept for jobs and the Unix socket
    (``fd_reserve``) would have been used."""
    unix_max_connections: int = 0
    """Unix-socket clients refused because ``max_connections`` were connected."""
    unix_descriptors: int = 0
    """Unix-socket clients refused because the daemon was out of file descriptors."""


class StatusResult(Struct, kw_only=True):
    """``daemon.status`` result."""

    version: str
    pid: int
    node: str
    uptime: float
    jobs: dict[str, int]
    listeners: list[Listener]
    loop_lag_ms: float
    connections: int
    shell: str
    shim: str = ""
    """The job shim (its path), or why jobs end with the daemon: ``missing: …``, ``stale: …``
    or ``off …``, with the fix."""
    store: str = "memory"
    store_health: StoreHealth = msgspec.field(default_factory=StoreHealth)
    """Writes the store refused, and writes a full journal dropped."""
    cgroups: str = "none"
    """The resource backend: ``v2 /sys/fs/cgroup/…``, ``v1 …`` or ``none``, and why."""
    hooks: int = 0
    """Hooks loaded (``hooks.list`` for details)."""
    metrics: list[CommandMetrics] = []
    """With the metrics hook: the most frequent command signatures."""
    fd_limit: int = 0
    """The daemon's file-descriptor limit (its soft limit, raised to the hard one at start)."""
    refused: Refusals = msgspec.field(default_factory=Refusals)
    """Connections turned away before they could cost the daemon's jobs anything, by cause."""
    fleet: str = ""
    """In fleet mode: this node, its state, its fleet slots and the fleet's nodes,
    ``node b up, 1/4 slots used, nodes: 2 up, 1 lost``; empty outside a fleet."""


class EmptyParams(Struct, forbid_unknown_fields=True):
    """For methods without parameters."""


StopMode = Literal["cancel", "drain", "leave"]
"""What stopping the daemon does to running jobs: cancel them, let them finish
(up to ``drain_timeout``, then cancel), or leave them running for the next daemon."""


class ShutdownParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``daemon.shutdown``: stop the daemon after replying."""

    mode: StopMode | None = None
    """Unset: the ``on_stop`` setting."""
    drain_timeout: Annotated[float, Meta(ge=0)] | None = None
    """For ``drain``; unset: the ``drain_timeout`` setting."""


class ShutdownResult(Struct, kw_only=True):
    """``daemon.shutdown`` result: what the daemon is about to do."""

    mode: StopMode
    running: int
    """Jobs running (or paused) when the stop began."""


class ReloadResult(Struct, kw_only=True):
    """``daemon.reload`` result: what re-reading the config changed."""

    changed: list[str] = []
    """``key=value`` of each setting now in effect with a new value."""
    restart_needed: list[str] = []
    """Settings whose new value in the file takes a restart to apply."""
    error: str | None = None
    """The config could not be read: the old one stays (nothing changed)."""


HistoryStatus = Literal[
    "queued", "starting", "running", "paused", "finished",
    "exited", "timeout", "idle_timeout", "cancelled", "killed", "failed_to_start", "lost", "oom",
    "dependency_failed", "budget_exceeded",
]  # fmt: skip
"""A job state or a finished job's reason (``history.list --status``)."""


class HistoryParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.list``: stored jobs newest first, filtered."""

    session: str | None = None
    status: HistoryStatus | None = None
    since: float | None = None
    grep: str | None = None
    node: str | None = None
    """Only jobs of this node (where they ran)."""
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 50


class StatsParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.stats``: duration statistics, for one command or all."""

    command: str | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class SignatureStats(Struct, kw_only=True):
    """Runs of one command signature."""

    signature: str
    count: int
    successes: int
    timeouts: int
    success_rate: float
    p50: float | None
    p95: float | None
    estimate: float | None
    basis: str


class StatsResult(Struct):
    """``history.stats`` result."""

    signatures: list[SignatureStats]


class ClaudeGroupBudget(Struct, kw_only=True):
    """One queue group's Claude budgets (``groups.NAME.budget_daily_usd``/``budget_monthly_usd``)."""

    group: str
    spent_today_usd: float
    """Cost of the group's Claude jobs that finished today (local day)."""
    spent_month_usd: float
    daily_usd: float
    """0: none."""
    monthly_usd: float
    """0: none."""
    action: Literal["wait", "refuse"]
    """``claude_budget_action``, which applies to the groups' budgets too."""
    spent: str | None = None
    """Why the group's new Claude jobs wait or are refused; null: they run."""
    resets_at: float | None = None


class ClaudeBudget(Struct, kw_only=True):
    """``claude.budget`` result: what Claude jobs cost today and this month, against the budgets."""

    spent_today_usd: float
    """Cost of the Claude jobs that finished today (local day)."""
    spent_month_usd: float
    """The same for this calendar month."""
    groups: list[ClaudeGroupBudget] = []
    """The budgets of the queue groups that have one (``groups.NAME.budget_daily_usd`` …)."""
    daily_usd: float
    """``claude_budget_daily_usd`` (0: none)."""
    monthly_usd: float
    """``claude_budget_monthly_usd`` (0: none)."""
    action: Literal["wait", "refuse"]
    """``claude_budget_action``: what new Claude jobs meet once a budget is spent."""
    spent: str | None = None
    """Why new Claude jobs wait or are refused (``daily budget spent, resets 00:00``); null: they run."""
    resets_at: float | None = None
    """When the spent budget resets (epoch seconds)."""


class UiLoginUrl(Struct, kw_only=True):
    """``ui.login_url`` result: a one-time login URL of the web dashboard."""

    url: str
    """``http(s)://HOST:PORT/ui/login?t=SECRET`` on the WebSocket port's address."""
    path: str
    """The same without scheme and host, for a client that reaches the port by another name."""
    expires_in: float
    """Seconds the URL may be used in, once."""


class PruneParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``history.prune``: drop finished jobs older than ``older_than`` seconds or beyond ``keep``."""

    older_than: Annotated[float, Meta(ge=0)] | None = None
    keep: Annotated[int, Meta(ge=0)] | None = None


class PruneResult(Struct):
    """``history.prune`` result."""

    removed: int


class SessionRef(Struct, forbid_unknown_fields=True):
    """Names one session."""

    name: str


class SessionListParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``session.list``: sessions by last activity."""

    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class SessionInfo(Struct, kw_only=True):
    """A named group of jobs (``run --session NAME``)."""

    name: str
    created: float
    last_active: float
    jobs: int


class SessionList(Struct):
    """``session.list`` result."""

    sessions: list[SessionInfo]


class SessionDetail(Struct):
    """``session.get`` result: the session and its jobs, newest first."""

    session: SessionInfo
    jobs: list[JobInfo]


class GroupSetParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``group.set``: change a queue group while the daemon runs (kept until it stops)."""

    name: GroupName
    parallel: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    """Jobs of the group running at once at most; 0 goes back to the configured limit."""
    paused: bool | None = None
    """True holds the group's queued jobs (running ones go on); false lets them start."""


class GroupInfo(Struct, kw_only=True):
    """One queue group: its limit, pause flag, and its jobs now."""

    name: str
    parallel: int | None = None
    """Jobs running at once at most (None: only ``max_concurrent_jobs``)."""
    paused: bool = False
    running: int = 0
    queued: int = 0
    source: Literal["config", "runtime", "implicit", "jobs"] = "jobs"
    """Where its limit comes from: the config (``groups``), ``group.set``, the daemon (``claude``:
    ``claude_max_concurrent``), or nowhere (a group only named by jobs)."""


class GroupList(Struct):
    """``group.list`` result: every configured group, changed group and group with jobs."""

    groups: list[GroupInfo]


class WorktreeEntry(Struct, omit_defaults=True, kw_only=True):
    """One job's worktree, as it is now (``worktree.list``)."""

    job_id: str
    branch: str
    path: str
    repo: str
    base: str
    exists: bool
    """Whether its directory is still there."""
    running: bool = False
    """A job runs in it now (it is never removed then)."""
    dirty: bool | None = None
    """Changes not committed (untracked files too); unset when it does not exist."""
    merged: bool | None = None
    """Its branch's tip is reachable from the repository's HEAD (a branch without commits counts)."""
    created_at: float = 0.0
    finished_at: float | None = None
    """When its job ended (the cleanup's ``worktree_keep_days`` count from then)."""


class WorktreeList(Struct):
    """``worktree.list`` result: every worktree ccxd made and has not removed, oldest first."""

    worktrees: list[WorktreeEntry]


class WorktreeDiff(Struct, kw_only=True):
    """``worktree.diff`` result: ``git diff`` of the worktree against its base commit."""

    job_id: str
    diff: str
    """Commits and uncommitted changes, untracked files included, as one patch."""
    truncated: bool = False
    """The patch was longer than 512 KiB and was cut at a line end."""


class WorktreeRmParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``worktree.rm``: remove a job's worktree and its branch."""

    job_id: str
    force: bool = False
    """Remove a tree with uncommitted changes, and a branch with commits not merged, too."""


class WorktreeRmResult(Struct, omit_defaults=True, kw_only=True):
    """``worktree.rm`` result."""

    job_id: str
    branch_deleted: bool
    note: str | None = None
    """Why the branch was kept (commits not merged into HEAD), in words."""


class WorktreePruneResult(Struct, kw_only=True):
    """``worktree.prune`` result: one round of the cleanup policy, as the minute's round runs it."""

    removed: list[str]
    """Job ids whose worktrees were removed."""
    kept: dict[str, str]
    """Job ids whose worktrees were kept, and why (running, uncommitted changes, young, …)."""


METHODS: Final[dict[str, tuple[type[Struct], type[Struct]]]] = {
    "job.start": (StartParams, JobInfo),
    "job.get": (JobRef, JobInfo),
    "job.list": (ListParams, JobList),
    "job.subscribe": (SubscribeParams, SubscribeResult),
    "job.unsubscribe": (JobRef, Ok),
    "job.read": (ReadParams, ReadResult),
    "job.cancel": (JobRef, JobInfo),
    "job.signal": (SignalParams, JobInfo),
    "job.pause": (JobRef, JobInfo),
    "job.resume": (JobRef, JobInfo),
    "history.list": (HistoryParams, JobList),
    "history.stats": (StatsParams, StatsResult),
    "history.prune": (PruneParams, PruneResult),
    "session.list": (SessionListParams, SessionList),
    "session.get": (SessionRef, SessionDetail),
    "daemon.status": (EmptyParams, StatusResult),
    "daemon.ping": (EmptyParams, PingResult),
    "daemon.shutdown": (ShutdownParams, ShutdownResult),
    "daemon.reload": (EmptyParams, ReloadResult),
    "hooks.list": (EmptyParams, HookList),
    "hooks.test": (HookTestParams, HookTestResult),
    "group.list": (EmptyParams, GroupList),
    "group.set": (GroupSetParams, GroupInfo),
    "worktree.list": (EmptyParams, WorktreeList),
    "worktree.diff": (JobRef, WorktreeDiff),
    "worktree.rm": (WorktreeRmParams, WorktreeRmResult),
    "worktree.prune": (EmptyParams, WorktreePruneResult),
    "claude.budget": (EmptyParams, ClaudeBudget),
    "ui.login_url": (EmptyParams, UiLoginUrl),
    "node.list": (EmptyParams, NodeList),
    "node.drain": (NodeRef, NodeInfo),
    "node.cordon": (NodeRef, NodeInfo),
    "node.uncordon": (NodeRef, NodeInfo),
}
