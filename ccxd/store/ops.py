"""The writes the supervisor asks of the store, as values that can be journaled."""

from __future__ import annotations

from msgspec import Struct

from ccxd.protocol import JobInfo

__all__ = ["AppendOutput", "Op", "RecordDuration", "SaveJob"]


class SaveJob(Struct, tag="job"):
    """Create or replace a job's record (idempotent)."""

    info: JobInfo


class AppendOutput(Struct, tag="out"):
    """Append one output chunk; chunk ``seq`` is written at most once."""

    job_id: str
    seq: int
    stream: int
    offset: int
    data: bytes


class RecordDuration(Struct, tag="dur"):
    """One finished run of a command signature, for timeout estimates."""

    signature: str
    duration: float
    ok: bool
    censored: bool
    at: float
    job_id: str


Op = SaveJob | AppendOutput | RecordDuration
