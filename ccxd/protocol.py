"""Every message ccxd speaks, as msgspec Structs.

This module is the single definition of the wire protocol (JSON-RPC 2.0). The
daemon, the client library and ``ccxctl`` all import it; nothing else builds
messages.  It performs no I/O.

Conventions:

* Methods are named ``<area>.<verb>``; :data:`METHODS` maps each name to its
  params and result types, :data:`NOTIFICATIONS` each server notification to its
  params type.  ``docs/protocol.md`` documents every entry (a test checks).
* Output bytes travel in :class:`OutputChunk`.  When a chunk is valid UTF-8 its
  ``data`` is that text and ``encoding`` is ``"utf-8"``; otherwise ``data`` is the
  base64 of the raw bytes and ``encoding`` is ``"base64"``.  A chunk never splits
  a UTF-8 character, so concatenating decoded chunks gives the exact bytes.
* Offsets are *combined* byte offsets: the position of a chunk's first byte in the
  job's output log, where stdout and stderr bytes are interleaved in the order
  ccxd read them.  Subscribing with ``from_offset`` resumes exactly there.
"""

from __future__ import annotations

import base64
import enum
import struct
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from ccxd.claude.events import ClaudeEvent

__all__ = [
    "JSONRPC_VERSION",
    "METHODS",
    "NOTIFICATIONS",
    "ErrorCode",
    "ErrorObject",
    "ErrorResponse",
    "JobInfo",
    "JobReason",
    "JobState",
    "JobStats",
    "Limits",
    "Notification",
    "OutputChunk",
    "Request",
    "Response",
    "Usage",
]

JSONRPC_VERSION: Final = "2.0"

RequestId = int | str | None


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the spec's own, then ccxd's application codes."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Application errors live in the spec's "server error" range.
    JOB_NOT_FOUND = -32001
    QUEUE_FULL = -32002
    JOB_NOT_ACTIVE = -32003
    UNAUTHORIZED = -32005
    SHUTTING_DOWN = -32006
    HOOK_REFUSED = -32007  # reserved for pre-execution hooks
    STORE_UNAVAILABLE = -32009
    SESSION_NOT_FOUND = -32010
    BUDGET_SPENT = -32011
    """A Claude job refused: the daemon's daily or monthly Claude budget is spent."""


class JobState(enum.StrEnum):
    """Where a job is in its life: queued → starting → running → finished."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class JobReason(enum.StrEnum):
    """Why a finished job finished."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    KILLED = "killed"
    FAILED_TO_START = "failed_to_start"
    LOST = "lost"
    OOM = "oom"
    DEPENDENCY_FAILED = "dependency_failed"
    """A job it waited for (``after``) did not succeed; ``error`` says which and how it ended."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """A Claude job's cost passed its ``max_budget_usd`` (the CLI's ``--max-budget-usd`` ended it,
    or ccxd did when the cost it reported passed the budget)."""


Stream = Literal["stdout", "stderr"]
Encoding = Literal["utf-8", "base64"]
Seconds = Annotated[float, Meta(gt=0, le=366 * 86400)]
TimeoutSeconds = Annotated[float, Meta(ge=0, le=366 * 86400)]
SIZE_PATTERN: Final = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"
Size = Annotated[int, Meta(ge=1)] | Annotated[str, Meta(pattern=SIZE_PATTERN)]
"""Bytes: an integer, or text such as ``"512M"``, ``"2G"``, ``"1.5GiB"`` (powers of 1024)."""
Cpus = Annotated[float, Meta(gt=0, le=4096)]
PidsLimit = Annotated[int, Meta(ge=1, le=4_194_304)]
IoWeight = Annotated[int, Meta(ge=1, le=10_000)]
GroupName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
"""A queue group: letters, digits, ``_.@-``, up to 64 characters."""


# --------------------------------------------------------------------------
# Envelopes
# --------------------------------------------------------------------------


class Request(Struct, omit_defaults=True):
    """A JSON-RPC request, or a notification when ``id`` is unset."""

    method: str
    jsonrpc: Literal["2.0"]
    params: Raw | UnsetType = UNSET
    id: RequestId | UnsetType = UNSET


class ErrorObject(Struct, omit_defaults=True):
    """The ``error`` member of an error response."""

    code: int
    message: str
    data: Any | UnsetType = UNSET


class Response(Struct):
    """A successful reply."""

    id: RequestId
    result: Any
    jsonrpc: str = JSONRPC_VERSION


class ErrorResponse(Struct):
    """A failed reply."""

    id: RequestId
    error: ErrorObject
    jsonrpc: str = JSONRPC_VERSION


class Notification(Struct):
    """A server → client notification (no ``id``)."""

    method: str
    params: Any
    jsonrpc: str = JSONRPC_VERSION


class OutputNotification(Struct):
    """A ``job.output`` notification decoded in one pass (the client's hot path)."""

    method: Literal["job.output"]
    params: OutputChunk
    jsonrpc: str = JSONRPC_VERSION


OUTPUT_NOTIFICATION_PREFIX: Final = b'{"method":"job.output",'
"""How every ``job.output`` line the daemon sends begins (fields encode in definition order)."""


class Reply(Struct, omit_defaults=True):
    """What a client decodes from the wire before it knows the result type."""

    jsonrpc: str = JSONRPC_VERSION
    id: RequestId | UnsetType = UNSET
    result: Raw | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET
    method: str | UnsetType = UNSET
    params: Raw | UnsetType = UNSET


# --------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------


class Limits(Struct, omit_defaults=True, kw_only=True):
    """Resource limits in force for a job (unset: no limit)."""

    memory: int | None = None
    """Hard memory limit in bytes, swap not allowed."""
    cpus: float | None = None
    """CPU quota in CPUs (1.5 = one and a half CPUs' time per period)."""
    pids: int | None = None
    """Most processes and threads at once; a fork past it fails."""
    io_weight: int | None = None
    """Relative IO weight 1..10000 (100 is the default), where the kernel has it."""


class Usage(Struct, omit_defaults=True, kw_only=True):
    """What a job used: the latest sample, with peaks and totals."""

    sampled_at: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time (user + system) of every process of the job so far."""
    cpu_percent: float = 0.0
    """CPU use since the previous sample (100 = one CPU)."""
    memory: int = 0
    """Memory in use now, bytes."""
    memory_peak: int = 0
    pids: int = 0
    """Processes and threads now."""
    pids_peak: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    cpu_throttled: float | None = None
    """Seconds the CPU quota held the job back (cgroup backends)."""
    psi_cpu: float | None = None
    """Pressure: share of the last 10 s some task waited for CPU (percent), where the kernel has it."""
    psi_memory: float | None = None
    psi_io: float | None = None
class ClaudeInfo(Struct, omit_defaults=True, kw_only=True):
    """What a Claude job's stream-json said, and the class of its outcome.

    Filled in while it runs (``session_id`` and ``model`` after ``init``) and
    completed when it ends; ``error_class`` is one of the classes listed in
    ``docs/protocol.md`` (``None``: success).
    """

    session_id: str | None = None
    """The CLI's session (read back from ``init``/``result``: a resume may fork)."""
    model: str | None = None
    ok: bool | None = None
    """The ``result`` event said success (``None``: no result)."""
    error_class: str | None = None
    error: str | None = None
    """The error in words (the result text or the CLI's message)."""
    api_status: int | None = None
    reset_at: float | None = None
    """``usage_limit``: when the limit lifts (epoch seconds)."""
    retry_after: float | None = None
    token_limit: int | None = None
    """``token_limit``: the output token maximum that was hit."""
    result: str | None = None
    """The plain result text (at most 1 MiB; ``result_truncated`` says if cut)."""
    result_truncated: bool = False
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    turns: int | None = None
    duration_api_ms: float | None = None
    terminal_reason: str | None = None
    events: int = 0
    api_retries: int = 0
    """``system/api_retry`` events: retries the CLI made itself."""


class DiffStat(Struct, kw_only=True):
    """What a job changed in its worktree since the base commit, committed or not (untracked too)."""

    files: int = 0
    insertions: int = 0
    deletions: int = 0
    commits: int = 0
    """Commits on the job's branch since the base commit."""


class WorktreeInfo(Struct, omit_defaults=True, kw_only=True):
    """``job.start`` ``worktree``: the git worktree the job runs in (ccxd/worktree/)."""

    path: str
    """The worktree's top directory (the job's cwd is the same subdirectory in it)."""
    branch: str
    """``ccxd/<job-id>``."""
    base: str
    """The commit it was made from (the repository's HEAD at the job's start)."""
    repo: str
    """The top directory of the repository the job's cwd was in."""
    head: str | None = None
    """The branch's tip when the job ended."""
    diffstat: DiffStat | None = None
    """Set when the job ended."""
    dirty: bool | None = None
    """When the job ended: whether the tree had changes not committed (untracked files too)."""


class JobInfo(Struct, omit_defaults=True, kw_only=True):
    """Everything a client can know about one job."""

    id: str
    state: JobState
    command: str | list[str]
    shell: str | None = None
    argv: list[str] = []
    cwd: str = ""
    env: dict[str, str] = {}
    session: str | None = None
    tags: list[str] = []
    timeout: float | None = None
    timeout_basis: str | None = None
    timeout_silence: float | None = None
    """Set when ``timeout`` is an estimate (a guard): past it, the job is ended only once it has
    also written nothing for this many seconds.  Unset: ``timeout`` is a wall-clock deadline."""
    idle_timeout: float | None = None
    reason: JobReason | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    pid: int | None = None
    pgid: int | None = None
    queue_position: int | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_bytes: int = 0
    output_cut: bool = False
    output_lost: str | None = None
    """Why the daemon could not store (all of) the job's output: its own trouble (out of file
    descriptors, a full disk), never the job's; ``reason`` and ``exit_code`` are still the job's."""
    node: str = ""
    peer: str = ""
    attempt: int = 1
    """Claude retry chains: 1 for a first run, N for the N-th attempt."""
    retry_of: str | None = None
    """The attempt this job retries (the previous link of its chain)."""
    retried_by: str | None = None
    """The next attempt, when this one failed and is being retried."""
    retry_note: str | None = None
    """Why this job was (or was not) retried, in words."""
    wait_until: float | None = None
    """A queued job waits until then (epoch seconds): a backoff or a usage-limit reset."""
    wait_reason: str | None = None
    """What a queued job waits for (``usage limit``, ``rate limit``, ``claude concurrency limit``,
    ``job ID (after)``, ``job ID (after-any)``, ``group NAME full (2/2)``, ``group NAME paused``)."""
    group: str | None = None
    """The queue group it was started in (``job.start`` ``group``)."""
    priority: int = 0
    """Queued jobs start by priority (higher first), then age: high 10, normal 0, low -10."""
    after: list[str] = []
    """Jobs that had to succeed before it could start."""
    after_any: list[str] = []
    """Jobs that had to end (however) before it could start."""
    limits: Limits | None = None
    """Limits in force (``job.start`` params over config defaults, after pre-hooks)."""
    limits_unenforced: list[str] = []
    """Limits the resource backend could not enforce for this job."""
    usage: Usage | None = None
    cgroup: str | None = None
    """The job's cgroup (its v2 or v1 memory path); unset with the none backend."""
    hooks: list[HookOutcome] = []
    """What each hook did for this job (pre, post and error hooks), in order."""
    annotations: dict[str, Any] = {}
    """Notes hooks added to the record (``HookResult.annotations``)."""
    claude: ClaudeInfo | None = None
    """Claude jobs: session, cost, tokens, turns, result and error class."""
    worktree: WorktreeInfo | None = None
    """Jobs started with ``worktree``: where they ran, and (once ended) what they changed."""


class OutputChunk(Struct, kw_only=True):
    """Up to 64 KiB of one stream's output."""

    job_id: str
    stream: Stream
    seq: int
    offset: int
    data: str
    encoding: Encoding = "utf-8"

    @staticmethod
    def encode_data(raw: bytes) -> tuple[str, Encoding]:
        """Return ``(data, encoding)`` carrying ``raw`` losslessly."""
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"

    def raw(self) -> bytes:
        """The exact bytes this chunk carries."""
        if self.encoding == "base64":
            return base64.b64decode(self.data)
        return self.data.encode("utf-8")


# --------------------------------------------------------------------------
# Method params and results
# --------------------------------------------------------------------------


class RetryParams(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """``job.start`` ``retry``: this Claude job's retry policy; unset members come from the config."""

    enabled: bool | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=100)] | None = None
    """Runs at most, the first included."""
    backoff_base: Seconds | None = None
    backoff_max: Seconds | None = None
    jitter: Annotated[float, Meta(ge=0, le=1)] | None = None
    token_limit: Literal["raise", "concise", "both", "off"] | None = None
    """After a token limit: raise CLAUDE_CODE_MAX_OUTPUT_TOKENS, ask for concision, both, or not."""
    usage_limit_max_wait: TimeoutSeconds | None = None
    """Give up on a usage limit that resets later than this many seconds from now."""


class StartParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.start``: run ``command`` (a shell string, or an argv list without a shell)."""

    command: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)] | None = None
    """Required, except with ``kind: "claude"`` (ccxd builds the argv from the Claude members)."""
    cwd: str | None = None
    env: dict[str, str] = {}
    shell: str | None = None
    timeout: TimeoutSeconds | None = None
    """Wall-clock limit; unset means estimated from history, 0 means none."""
    idle_timeout: Seconds | None = None
    session: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    tags: list[str] = []
    input: str | None = None
    subscribe: bool = False
    binary: bool = False
    """With ``subscribe``: output as binary WebSocket frames (:func:`encode_output_frame`)."""
    retry: RetryParams | None = None
    """Claude jobs: overrides of the config's retry policy."""
    memory: Size | None = None
    """Hard memory limit (bytes or ``"2G"``); the job is killed with reason ``oom`` past it."""
    cpus: Cpus | None = None
    """CPU quota in CPUs."""
    pids: PidsLimit | None = None
    """Most processes/threads at once."""
    io_weight: IoWeight | None = None
    """Relative IO weight 1..10000."""
    # Claude jobs (kind "claude"): ccxd builds `claude -p PROMPT ...` itself (no shell quoting).
    kind: Literal["shell", "claude"] | None = None
    """``"claude"``: run Claude Code with the members below; a ``claude`` argv is a Claude job too,
    and so is a shell string that runs ``claude -p`` in a recognised shape (README, "Claude jobs").
    ``"shell"``: never a Claude job (no monitor, retry, gate or text rendering), whatever it runs."""
    prompt: str | None = None
    prompt_on_stdin: bool = False
    """Write the prompt to stdin (then close it) instead of passing it as an argument."""
    model: str | None = None
    max_turns: Annotated[int, Meta(ge=1)] | None = None
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    mcp_config: str | None = None
    """``--mcp-config``: a file path or a JSON string."""
    resume: str | None = None
    """``--resume SESSION`` (run in the session's original ``cwd`` with the same flags)."""
    continue_session: bool = False
    permission_mode: str | None = None
    skip_permissions: bool | None = None
    """``--dangerously-skip-permissions``; unset: the config's ``claude_skip_permissions``."""
    output_format: Literal["stream-json", "json", "text"] = "stream-json"
    """Only ``stream-json`` gives events, classification while running and stall detection."""
    include_partial_messages: bool = False
    """``--include-partial-messages``: token-level ``stream_event`` events (stream-json only)."""
    claude_args: list[str] = []
    """More CLI arguments, passed as given."""
    stall_timeout: Seconds | None = None
    """End the job when no event arrives for this long; unset: ``claude_stall_timeout``."""
    max_budget_usd: Annotated[float, Meta(gt=0)] | None = None
    """End the Claude job once its cost passes this many US dollars (``--max-budget-usd``): it
    ends ``budget_exceeded``, not retried."""
    # Queueing: groups, priorities, dependencies (ccxd/supervision/queue.py).
    group: GroupName | None = None
    """Run in this queue group: at most its ``parallel`` jobs at once, held while it is paused."""
    priority: Literal["high", "normal", "low"] | Annotated[int, Meta(ge=-1000, le=1000)] = "normal"
    """Queued jobs start by priority (higher first), then age; high = 10, normal = 0, low = -10."""
    after: Annotated[list[str], Meta(max_length=256)] = []
    """Start only once each of these jobs succeeded (exit 0); if one does not, this job ends
    ``dependency_failed``."""
    after_any: Annotated[list[str], Meta(max_length=256)] = []
    """Start only once each of these jobs ended, however it ended."""
    worktree: bool = False
    """Run in a fresh git worktree of ``cwd``'s repository, on a new branch ``ccxd/<job-id>``
    (``worktree.*`` methods; refused when ``cwd`` is not in a git repository)."""


class JobRef(Struct, forbid_unknown_fields=True):
    """Names one job."""

    job_id: str


class ListParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.list``: newest first, optionally filtered."""

    state: JobState | None = None
    session: str | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100


class JobList(Struct):
    """``job.list`` result."""

    jobs: list[JobInfo]


class SubscribeParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.subscribe``: replay output from ``from_offset``, then follow live."""

    job_id: str
    from_offset: Annotated[int, Meta(ge=0)] = 0
    output: bool = True
    binary: bool = False
    """Output as binary WebSocket frames (:func:`encode_output_frame`); WebSocket only."""
    stats: bool = False
    """Also send ``job.stats`` resource samples."""


class SubscribeResult(Struct):
    """``job.subscribe`` result: the job as it is when the subscription starts."""

    job: JobInfo


class ReadParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``job.read``: output chunks from ``offset`` up to ``max_bytes``."""

    job_id: str
    offset: Annotated[int, Meta(ge=0)] = 0
    max_bytes: Annotated[int, Meta(ge=1, le=16 * 1024 * 1024)] = 1024 * 1024


class ReadResult(Struct):
    """``job.read`` result; ``eof`` once the job is finished and all was read."""

    chunks: list[OutputChunk]
    next_offset: int
    eof: bool
    gap: bool = False


class SignalParams(Struct, forbid_unknown_fields=True):
    """``job.signal``: a signal number or name (``TERM``, ``SIGUSR1``, ``9``)."""

    job_id: str
    signal: int | str


class Ok(Struct):
    """A result that only says it worked."""

    ok: bool = True


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


# --------------------------------------------------------------------------
# Notification params
# --------------------------------------------------------------------------


class JobQueued(Struct, omit_defaults=True):
    """``job.queued``: the job waits for a slot at ``position`` (1 = next), or until ``wait_until``."""

    job_id: str
    position: int
    wait_until: float | None = None
    wait_reason: str | None = None


class JobStarted(Struct):
    """``job.started``: the process is running, with the timeout in force and its basis."""

    job_id: str
    pid: int
    pgid: int
    timeout: float | None = None
    timeout_basis: str | None = None
    timeout_silence: float | None = None
    """Set for an estimated timeout: it ends the job only after this long without output."""


class JobFinished(Struct):
    """``job.finished``: the final record of the job."""

    job: JobInfo


class OutputGap(Struct):
    """``job.gap``: output in [start, end) is no longer available to this subscriber."""

    job_id: str
    start: int
    end: int
    reason: str


class OutputCut(Struct):
    """``job.output_cut``: the job exceeded its output cap; later output is not kept."""

    job_id: str
    offset: int
    limit: int


class ClaudeEventNote(Struct, kw_only=True):
    """``claude.event``: one stream-json event of a Claude job, parsed.

    ``event.kind`` names it (``init``, ``assistant``, ``user``, ``api_retry``,
    ``rate_limit``, ``stream_event``, ``system``, ``result``, ``unknown``,
    ``text``, ``oversize``).  ``offset`` is the end of the output that held it:
    it follows the ``job.output`` that carries its line.
    """

    job_id: str
    seq: int
    offset: int
    event: ClaudeEvent


class JobRetry(Struct, kw_only=True, omit_defaults=True):
    """``job.retry``: a Claude job failed retryably; ``next_job_id`` is attempt ``attempt``."""

    job_id: str
    next_job_id: str
    attempt: int
    error_class: str
    reason: str
    delay: float = 0.0
    """Seconds until the next attempt may start."""
    wait_until: float | None = None
    max_output_tokens: int | None = None
    """CLAUDE_CODE_MAX_OUTPUT_TOKENS of the next attempt, when it changed."""
    concision_level: int = 0
    """Concision instructions added to the next attempt's prompt (0–3)."""


class JobStats(Struct):
    """``job.stats``: a resource sample of a running job (``job.subscribe`` with ``stats``)."""

    job_id: str
    usage: Usage


# --------------------------------------------------------------------------
# Hooks (ccxd/hooks/): what a hook did, what is loaded, dry runs
# --------------------------------------------------------------------------

HookPointName = Literal["pre_execution", "post_execution", "error"]
"""Where a hook runs: before spawn, after exit, or after a failure."""
HookPolicy = Literal["open", "closed"]
"""What a hook that fails (raises, hangs, garbage, missing) means: go on (open) or refuse (closed)."""
HookResultName = Literal["ok", "changed", "annotated", "blocked", "failed", "timeout"]


class HookOutcome(Struct, omit_defaults=True, kw_only=True):
    """What one hook did for one job.

    ``result``: ``ok`` (nothing to do), ``changed`` (a pre hook changed the job),
    ``annotated`` (notes added to the record), ``blocked`` (the hook refused the
    job), ``failed`` (raised, exited non-zero, printed invalid JSON, missing) or
    ``timeout``.  For the last two, ``policy`` says how it was handled: ``open``
    (the job went on) or ``closed`` (the job was refused).
    """

    name: str
    point: HookPointName
    result: HookResultName
    duration: float
    message: str = ""
    policy: HookPolicy | None = None


class HookEvent(Struct):
    """``hook.pre_execution``/``hook.post_execution``/``hook.error``: one hook's outcome."""

    job_id: str
    hook: HookOutcome


class HookMatch(Struct, omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    """Which jobs a hook runs for; every member that is set must match."""

    command: str | None = None
    """Regular expression searched in the command (an argv list is joined with spaces)."""
    kind: Literal["shell", "claude"] | None = None
    """``claude`` for Claude Code jobs (program ``claude``), ``shell`` for the rest."""
    session: str | None = None
    """Glob the job's session name must match (``fnmatch``)."""
    tags: list[str] = []
    """The job must carry at least one of these tags."""


class HookDescription(Struct, omit_defaults=True, kw_only=True):
    """One loaded hook, as ``hooks.list`` shows it."""

    name: str
    point: HookPointName
    kind: Literal["python", "command", "builtin"]
    source: str
    """The file, entry point, config key or built-in it came from."""
    match: HookMatch = msgspec.field(default_factory=HookMatch)
    timeout: float
    policy: HookPolicy
    loop_blocks: int = 0
    """Times this async hook blocked the daemon's event loop past its timeout since it was loaded."""
    disabled: str | None = None
    """Why it no longer runs (it blocked the loop ``hook_block_limit`` times); a reload re-enables it."""


class HookList(Struct, kw_only=True):
    """``hooks.list`` result."""

    enabled: bool
    hooks: list[HookDescription]
    errors: list[str] = []
    """Hook files or entry points that could not be loaded (the rest still run)."""
    loaded_at: float


class HookTestParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """``hooks.test``: run one hook against a made-up job, without running the job."""

    name: str
    command: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)]
    point: HookPointName | None = None
    """Needed only when ``name`` is loaded at several points."""
    cwd: str | None = None
    env: dict[str, str] = {}
    session: str | None = None
    tags: list[str] = []
    exit_code: int = 0
    """For post and error hooks: the exit code of the pretend job."""
    reason: JobReason = JobReason.EXITED
    """For post and error hooks: why the pretend job finished."""


class HookTestResult(Struct, omit_defaults=True, kw_only=True):
    """``hooks.test`` result: what the hook would do."""

    matched: bool
    """False when the hook's matchers skip this job (the hook was not run)."""
    outcome: HookOutcome | None = None
    refused: bool = False
    """A pre hook (or its failure under fail-closed) would refuse the job."""
    changes: dict[str, Any] = {}
    """The fields of ``job.start`` params the hook would change, with their new values."""
    annotations: dict[str, Any] = {}


class CommandMetrics(Struct, kw_only=True):
    """Counts, durations and exit reasons of one command signature (metrics hook)."""

    signature: str
    count: int
    duration_sum: float
    reasons: dict[str, int]
    exit_codes: dict[str, int]


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
}

NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "job.queued": JobQueued,
    "job.started": JobStarted,
    "job.output": OutputChunk,
    "job.gap": OutputGap,
    "job.output_cut": OutputCut,
    "job.finished": JobFinished,
    "job.retry": JobRetry,
    "job.stats": JobStats,
    "hook.pre_execution": HookEvent,
    "hook.post_execution": HookEvent,
    "hook.error": HookEvent,
    "claude.event": ClaudeEventNote,
}


# --------------------------------------------------------------------------
# Codec helpers shared by both ends
# --------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(message: Struct) -> bytes:
    """Encode one message as compact JSON (no trailing newline)."""
    return _encoder.encode(message)


def notification(method: str, params: Struct) -> Notification:
    """Build a notification, checking that ``method`` is one ccxd defines."""
    if method not in NOTIFICATIONS:
        raise KeyError(method)
    return Notification(method=method, params=params)


def error(req_id: RequestId, code: ErrorCode, message: str, data: Any = UNSET) -> ErrorResponse:
    """Build an error response."""
    return ErrorResponse(id=req_id, error=ErrorObject(code=int(code), message=message, data=data))


# ==========================================================================
# WebSocket transport: binary output frames, HTTP endpoints, close codes,
# and the cc_executor compatibility messages.  (Section owned by the
# WebSocket front-end; native methods stay in METHODS/NOTIFICATIONS above.)
# ==========================================================================

WS_PATHS: Final = ("/ws", "/ws/mcp")
"""WebSocket endpoints; ``/ws/mcp`` is cc_executor's name for the same service."""
HEALTH_PATH: Final = "/health"
"""Plain HTTP ``GET`` on the WebSocket port: :class:`Health`, no token needed."""
WS_SUBPROTOCOL: Final = "ccxd"
"""The subprotocol the server selects; browsers must offer it next to the bearer one."""
WS_BEARER_PREFIX: Final = "ccxd.bearer."
"""``Sec-WebSocket-Protocol: ccxd, ccxd.bearer.<token>``: the token for clients that cannot set headers."""
WS_CLIENT_NONCE: Final = "Ccxd-Client-Nonce"
"""Challenge–response (:mod:`ccxd.transports.challenge`): the client's fresh nonce, in both requests."""
WS_SERVER_NONCE: Final = "Ccxd-Server-Nonce"
"""Challenge–response: the server's nonce, in its 401 answer and then in the client's second request."""
WS_SERVER_PROOF: Final = "Ccxd-Server-Proof"
"""Challenge–response: the server's HMAC proof that it knows the token, in its 401 and 101 answers."""
WS_CLIENT_PROOF: Final = "Ccxd-Client-Proof"
"""Challenge–response: the client's HMAC proof that it knows the token, in its second request."""


class WsClose(enum.IntEnum):
    """WebSocket close codes ccxd sends (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    """Idle timeout, or the client asked to close."""
    GOING_AWAY = 1001
    """The daemon is stopping."""
    POLICY = 1008
    """Refused by policy after the handshake (e.g. the connection limit)."""
    TOO_BIG = 1009
    """A message exceeded ``max_message_bytes``."""
    INTERNAL = 1011
    """A bug on the daemon's side."""


OUTPUT_FRAME_MAGIC: Final = 0x01
_OUTPUT_FRAME_HEAD: Final = struct.Struct("<BBQQH")
OUTPUT_FRAME_HEADER_SIZE: Final = _OUTPUT_FRAME_HEAD.size  # 20
_STREAM_CODES: Final[dict[str, int]] = {"stdout": 0, "stderr": 1}
_STREAM_NAMES: Final[tuple[Stream, Stream]] = ("stdout", "stderr")


class OutputFrame(NamedTuple):
    """One binary output frame, decoded: the raw bytes, no text round trip."""

    job_id: str
    stream: Stream
    seq: int
    offset: int
    data: bytes


def encode_output_frame(job_id: str, stream: int | Stream, seq: int, offset: int, data: bytes) -> bytes:
    """A binary WebSocket frame carrying one output chunk (``job.output`` without JSON).

    Sent instead of ``job.output`` notifications to subscribers that asked for
    ``binary: true`` (``job.start`` with ``subscribe``, or ``job.subscribe``).
    All integers are little endian::

        offset  size  field
        0       1     magic, 0x01 (a JSON text frame never starts with it)
        1       1     stream: 0 = stdout, 1 = stderr
        2       8     seq, u64: the chunk's sequence number in the job's output
        10      8     offset, u64: combined byte offset of data[0] (as in job.output)
        18      2     n, u16: length of the job id
        20      n     job id, ASCII
        20+n    rest  the output bytes, exactly as the job wrote them

    Every other message (replies, ``job.started``, ``job.finished``, gaps)
    stays a JSON text frame, in order with the binary frames.
    """
    return output_frame_head(job_id, stream, seq, offset) + data


def output_frame_head(job_id: str, stream: int | Stream, seq: int, offset: int) -> bytes:
    """The first ``20 + len(job_id)`` bytes of :func:`encode_output_frame`'s frame (the data follows)."""
    code = stream if isinstance(stream, int) else _STREAM_CODES[stream]
    ident = job_id.encode("ascii")
    return _OUTPUT_FRAME_HEAD.pack(OUTPUT_FRAME_MAGIC, code, seq, offset, len(ident)) + ident


def unpack_output_frame(frame: bytes) -> OutputFrame:
    """Decode :func:`encode_output_frame`'s layout; ValueError if ``frame`` is not one."""
    job_id, code, seq, offset, end = _output_frame_head(frame)
    return OutputFrame(job_id, _STREAM_NAMES[code], seq, offset, bytes(frame[end:]))


def _output_frame_head(frame: bytes | bytearray) -> tuple[str, int, int, int, int]:
    """(job id, stream code, seq, offset, where the data starts); ValueError if not an output frame."""
    if len(frame) < OUTPUT_FRAME_HEADER_SIZE:
        raise ValueError(f"binary frame too short: {len(frame)} bytes")
    magic, code, seq, offset, n = _OUTPUT_FRAME_HEAD.unpack_from(frame)
    if magic != OUTPUT_FRAME_MAGIC:
        raise ValueError(f"not an output frame (magic byte {magic:#04x})")
    if code > 1:
        raise ValueError(f"unknown stream code {code}")
    end = OUTPUT_FRAME_HEADER_SIZE + n
    if len(frame) < end:
        raise ValueError("binary frame shorter than its job id")
    return bytes(frame[OUTPUT_FRAME_HEADER_SIZE:end]).decode("ascii"), code, seq, offset, end


def decode_output_frame(frame: bytes | bytearray) -> OutputChunk:
    """A binary output frame as the :class:`OutputChunk` a ``job.output`` would carry."""
    return decode_output_frame_sized(frame)[0]


def decode_output_frame_sized(frame: bytes | bytearray) -> tuple[OutputChunk, int]:
    """:func:`decode_output_frame` and the number of output bytes the frame carried.

    The output is decoded straight from the frame (no intermediate ``bytes``):
    for a client this is the one copy of each byte it has to make.
    """
    job_id, code, seq, offset, end = _output_frame_head(frame)
    encoding: Encoding = "utf-8"
    with memoryview(frame) as view:
        raw = view[end:]
        try:
            data = str(raw, "utf-8")
        except UnicodeDecodeError:
            data, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        size = len(raw)
        raw.release()
    chunk = OutputChunk(
        job_id=job_id,
        stream=_STREAM_NAMES[code],
        seq=seq,
        offset=offset,
        data=data,
        encoding=encoding,
    )
    return chunk, size


class Health(Struct):
    """``GET /health``: enough to tell the service is up, nothing secret."""

    status: Literal["healthy"]
    service: str
    version: str
    active_sessions: int
    """Open WebSocket connections."""
    uptime_seconds: float


# -- cc_executor compatibility ---------------------------------------------
#
# cc_executor's WebSocket clients speak these methods and notifications on
# ``/ws`` and ``/ws/mcp``.  They are served next to the native methods on every
# WebSocket connection (names cannot clash: native names have a dot), run real
# ccxd jobs (tagged ``cc_executor``), and fix cc_executor's bugs: real exit
# codes, 124 for a timeout, -32700 for bad JSON, ids kept, clean close codes.


class ExecuteParams(Struct, kw_only=True):
    """``execute``: run ``command`` with ``$SHELL -c``; other members are ignored."""

    command: Annotated[str, Meta(min_length=1)]
    timeout: TimeoutSeconds | None = None
    """Seconds; unset or 0 means none, as in cc_executor (``idle_timeout`` still applies)."""


class ExecuteResult(Struct):
    """``execute`` result, sent once the process runs (queued jobs wait for a slot)."""

    status: Literal["started"]
    pid: int
    pgid: int
    job_id: str
    """The ccxd job (``ccxctl ps``, ``job.subscribe``); an addition to cc_executor's result."""


class ControlParams(Struct, kw_only=True):
    """``control``: act on this connection's running ``execute`` job."""

    type: Literal["PAUSE", "RESUME", "CANCEL"]


class ControlResult(Struct):
    """``control`` result; a ``process.paused``/``resumed``/``canceled`` notification follows."""

    status: Literal["paused", "resumed", "canceled"]


class LegacyParams(Struct):
    """Params of ``pong`` and ``hook_status``: anything, ignored."""


class HookStatusResult(Struct):
    """``hook_status`` result: whether hooks are loaded, and their names (``point:name``)."""

    enabled: bool
    hooks: list[str]
    message: str


class Connected(Struct):
    """``connected``: the first message on every WebSocket connection."""

    session_id: str
    version: str
    capabilities: list[str]


class ProcessStatus(Struct):
    """``process.started``/``paused``/``resumed``/``canceled``."""

    status: Literal["started", "paused", "resumed", "canceled"]
    pid: int | None
    pgid: int | None
    job_id: str


class ProcessOutput(Struct):
    """``process.output``: one line of a stream (newline included), as text, as cc_executor sent it.

    A line longer than 64 KiB comes in pieces of at most 64 KiB, never cut inside
    a UTF-8 character; only the last piece ends with the newline.  A last line
    without a newline comes when the job ends.  Bytes that are not UTF-8 arrive
    as U+FFFD (use native ``job.subscribe`` for exact bytes).  ``truncated`` is
    true when output before this line was lost to this client (evicted from
    memory and the spool).
    """

    type: Stream
    data: str
    job_id: str
    truncated: bool = False
    chunk_index: int | UnsetType = UNSET
    total_chunks: int | UnsetType = UNSET


class ProcessCompleted(Struct, kw_only=True):
    """``process.completed``: the real exit code; a timeout is ``failed`` with 124.

    A process killed by signal N reports ``128 + N`` (as a shell would) and ``signal``.
    """

    status: Literal["completed", "failed"]
    pid: int | None
    pgid: int | None
    exit_code: int | None
    execution_time: float
    job_id: str
    reason: str
    signal: int | None = None


class ProcessError(Struct, omit_defaults=True):
    """``process.failed`` (the job could not run) or ``process.error`` (following it failed)."""

    error: str
    job_id: str | None = None


class ClaudeErrorNotice(Struct, kw_only=True, omit_defaults=True):
    """cc_executor's ``error.*`` notifications: a Claude job failed (sent before ``process.completed``).

    ``error.token_limit_exceeded``, ``error.rate_limit_exceeded``, ``error.service_unavailable``
    and ``error.authentication_failed`` carry it.  ``recoverable`` is true when ccxd retries
    it (``next_job_id`` is the next attempt).
    """

    session_id: str
    """The connection's ``connected`` session id."""
    job_id: str
    error_type: str
    """``token_limit``, ``usage_limit``, ``rate_limit_429``, ``overloaded``, ``api_error``, ``network``,
    ``auth``."""
    message: str
    error_text: str = ""
    recoverable: bool = False
    limit: int | None = None
    """``token_limit``: the output token maximum that was hit."""
    suggestion: str | None = None
    reset_timestamp: int | None = None
    """``usage_limit``: when the limit resets (epoch seconds)."""
    retry_after: float | None = None
    """Seconds until the next attempt."""
    next_job_id: str | None = None


class LegacyPing(Struct):
    """``ping``: sent every ``ws_legacy_ping_interval`` seconds; clients may answer ``pong``."""

    timestamp: float


LEGACY_METHODS: Final[dict[str, tuple[type[Struct], type[Struct]]]] = {
    "execute": (ExecuteParams, ExecuteResult),
    "control": (ControlParams, ControlResult),
    "pong": (LegacyParams, Ok),
    "hook_status": (LegacyParams, HookStatusResult),
}

LEGACY_NOTIFICATIONS: Final[dict[str, type[Struct]]] = {
    "connected": Connected,
    "ping": LegacyPing,
    "process.started": ProcessStatus,
    "process.output": ProcessOutput,
    "process.completed": ProcessCompleted,
    "process.failed": ProcessError,
    "process.error": ProcessError,
    "process.paused": ProcessStatus,
    "process.resumed": ProcessStatus,
    "process.canceled": ProcessStatus,
    "error.token_limit_exceeded": ClaudeErrorNotice,
    "error.rate_limit_exceeded": ClaudeErrorNotice,
    "error.service_unavailable": ClaudeErrorNotice,
    "error.authentication_failed": ClaudeErrorNotice,
}


def legacy_notification(method: str, params: Struct) -> Notification:
    """Build a cc_executor notification, checking that ``method`` is one."""
    if method not in LEGACY_NOTIFICATIONS:
        raise KeyError(method)
    return Notification(method=method, params=params)
