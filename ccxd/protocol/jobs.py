"""A job as clients see it: :class:`JobInfo`, its limits, usage, Claude and worktree parts; output chunks."""

from __future__ import annotations

import base64
from typing import Any

from msgspec import Struct

from ccxd.protocol.common import Encoding, JobReason, JobState, Stream
from ccxd.protocol.hooks import HookOutcome

__all__ = [
    "ClaudeInfo",
    "DiffStat",
    "JobInfo",
    "Limits",
    "OutputChunk",
    "Usage",
    "WorktreeInfo",
]


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
