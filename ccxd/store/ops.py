"""The writes the supervisor asks of the store, as values that can be journaled."""

from __future__ import annotations

from msgspec import Struct

from ccxd.protocol import CommandMetrics, JobInfo, StartParams

__all__ = [
    "AppendOutput",
    "ClaudeState",
    "Op",
    "PendingAttempt",
    "RecordDuration",
    "RecordMetric",
    "SaveClaudeState",
    "SaveJob",
    "describe",
    "metrics_from_fields",
]


class SaveJob(Struct, tag="job", omit_defaults=True):
    """Create or replace a job's record (idempotent)."""

    info: JobInfo
    fleet_epoch: int = 0
    """A fleet job's epoch when it was claimed (0: not a fleet job): written only while it holds."""


class AppendOutput(Struct, tag="out", omit_defaults=True):
    """Append one output chunk; chunk ``seq`` is written at most once."""

    job_id: str
    seq: int
    stream: int
    offset: int
    data: bytes
    fleet_epoch: int = 0
    """As :attr:`SaveJob.fleet_epoch`."""


class RecordDuration(Struct, tag="dur"):
    """One finished run of a command signature, for timeout estimates."""

    signature: str
    duration: float
    ok: bool
    censored: bool
    at: float
    job_id: str


class PendingAttempt(Struct, kw_only=True):
    """A Claude retry attempt that waits to start, kept so it outlives a daemon restart."""

    job_id: str
    params: StartParams
    """The attempt's request; environment values that look secret are not kept (``secret_env``)."""
    base_params: StartParams
    """The chain's first request (concision instructions are added to its prompt)."""
    attempt: int
    retry_of: str
    concision_level: int = 0
    wait_until: float | None = None
    wait_reason: str | None = None
    queued_at: float = 0.0
    peer: str = ""
    secret_env: list[str] = []
    """Names of environment variables whose values were not stored."""


class ClaudeState(Struct, kw_only=True):
    """What the Claude retry runner keeps across restarts, per node."""

    block_until: float | None = None
    """Every Claude job waits until then (a usage limit's reset)."""
    block_reason: str | None = None
    pending: list[PendingAttempt] = []


class SaveClaudeState(Struct, tag="claude"):
    """Replace the node's Claude retry state."""

    state: ClaudeState


class RecordMetric(Struct, tag="metric"):
    """One finished job for the metrics hook: counted per signature, reason and exit code."""

    signature: str
    reason: str
    exit_code: int | None
    duration: float
    at: float = 0.0
    """When the job finished (0: unknown, a record journalled by an older version)."""



Op = SaveJob | AppendOutput | RecordDuration | SaveClaudeState | RecordMetric


def describe(op: Op) -> str:
    """A write in words, for the log and ``daemon.status``."""
    if isinstance(op, SaveJob):
        session = f" (session {op.info.session!r})" if op.info.session else ""
        return f"the record of job {op.info.id}{session}"
    if isinstance(op, AppendOutput):
        return f"output of job {op.job_id} at offset {op.offset}"
    if isinstance(op, RecordDuration):
        return f"a run time of {op.signature[:80]!r}"
    if isinstance(op, RecordMetric):
        return f"the metrics of {op.signature[:80]!r}"
    return "the Claude retry state"


def metrics_from_fields(fields: dict[str, str]) -> CommandMetrics:
    """A signature's metrics hash (``keys.metrics``) as a :class:`CommandMetrics`."""
    reasons: dict[str, int] = {}
    codes: dict[str, int] = {}
    for name, value in fields.items():
        if name.startswith("reason:"):
            reasons[name[7:]] = int(value)
        elif name.startswith("exit:"):
            codes[name[5:]] = int(value)
    return CommandMetrics(
        signature=fields.get("signature", "?"),
        count=int(fields.get("count", 0)),
        duration_sum=round(float(fields.get("duration_sum", 0.0)), 6),
        reasons=reasons,
        exit_codes=codes,
    )
