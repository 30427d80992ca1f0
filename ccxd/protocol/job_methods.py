"""Params and results of the ``job.*`` methods (start, get, list, subscribe, read, signal)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from ccxd.protocol.common import Cpus, GroupName, IoWeight, JobState, PidsLimit, Seconds, Size, TimeoutSeconds
from ccxd.protocol.jobs import JobInfo, OutputChunk
from ccxd.protocol.nodes import Labels, NodeName

__all__ = [
    "JobList",
    "JobRef",
    "ListParams",
    "Ok",
    "ReadParams",
    "ReadResult",
    "RetryParams",
    "SignalParams",
    "StartParams",
    "SubscribeParams",
    "SubscribeResult",
]


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


class StartParams(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
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
    """With ``subscribe``: output as binary frames (:func:`encode_output_frame`; NUL-led records on Unix)."""
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
    # Fleets (docs/fleet-design.md): where the job may run.
    where: Labels = {}
    """Run only on a node whose labels include every one of these (``{"gpu": "1"}``); outside fleet
    mode this daemon's ``node_labels`` must."""
    node: NodeName | None = None
    """Run on this node only; outside fleet mode only this daemon's own name is accepted."""
    retry_on_node_loss: bool = False
    """When the node running it is lost, start it again on another node (a new job, ``retry_of``
    this one); unset, it ends ``lost``.  Claude jobs are re-run either way."""


class JobRef(Struct, forbid_unknown_fields=True):
    """Names one job."""

    job_id: str


class ListParams(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """``job.list``: newest first, optionally filtered."""

    state: JobState | None = None
    session: str | None = None
    node: str | None = None
    """Only jobs of this node (in a fleet, where they run or ran)."""
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
    """Output as binary frames (:func:`encode_output_frame`; NUL-led records on the Unix socket)."""
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
