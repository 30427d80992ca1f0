"""A fleet queue entry: the job's request and where it came from, sealed with the fleet key (no I/O).

Whoever else can write to the Redis could otherwise queue a command for every
node to run, so a node runs only what carries an HMAC under the fleet secret
(``fleet_key_file``, ``store/integrity.py``), bound to ``fleet:job:<id>``: a
sealed spec cannot stand in for another job's.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ccxd.fleet.keys import Bucket
from ccxd.fleet.placement import bucket
from ccxd.protocol import StartParams
from ccxd.store import integrity

__all__ = [
    "BadSeal",
    "JobEntry",
    "Unreadable",
    "job_context",
    "open_sealed",
    "pack_entry",
    "seal_bytes",
    "unpack_entry",
]

_TAG: Final = b"s1:"
_MAC_LEN: Final = 64  # hex HMAC-SHA256


class BadSeal(ValueError):
    """Sealed bytes whose MAC is missing or wrong, or whose body is unreadable: never acted on."""


class Unreadable(BadSeal):
    """Sealed with the fleet key but not readable here: another version's entry (a newer node may run it)."""


class JobEntry(msgspec.Struct, kw_only=True):
    """What a node needs to run a queued fleet job as the submitter asked."""

    job_id: str
    params: StartParams
    submitter: str
    """The node that took the ``job.start``."""
    peer: str = ""
    """Who asked (the submitting transport's peer description)."""
    retry_of: str | None = None
    attempt: int = 1
    queued_at: float = 0.0
    """When the job was submitted (epoch seconds)."""

    @property
    def bucket(self) -> Bucket:
        """The priority stream it is queued on (unless pinned)."""
        return bucket(self.params.priority)

    @property
    def rerunnable(self) -> bool:
        """Whether a run lost with its node is run again: asked for, or a Claude job."""
        return self.params.retry_on_node_loss or self.params.kind == "claude"


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JobEntry)


def job_context(job_id: str) -> str:
    """What a job's spec is sealed for."""
    return f"fleet:job:{job_id}"


def seal_bytes(key: bytes, context: str, body: bytes) -> bytes:
    """``body`` with its MAC under ``key`` for ``context``, as stored (no I/O)."""
    return _TAG + integrity.seal(key, context, body).encode() + b":" + body


def open_sealed(key: bytes, context: str, raw: bytes) -> bytes:
    """The body of :func:`seal_bytes`'s ``raw``; :class:`BadSeal` unless ``key`` sealed it for ``context``."""
    if not raw.startswith(_TAG) or raw[len(_TAG) + _MAC_LEN : len(_TAG) + _MAC_LEN + 1] != b":":
        raise BadSeal(f"{context}: not sealed")
    mac = raw[len(_TAG) : len(_TAG) + _MAC_LEN].decode("ascii", "replace")
    body = raw[len(_TAG) + _MAC_LEN + 1 :]
    if not integrity.verify(key, context, body, mac):
        raise BadSeal(f"{context}: the MAC is not the fleet key's (written by someone without it)")
    return body


def pack_entry(key: bytes, entry: JobEntry) -> bytes:
    """``entry`` packed and sealed for its job id (no I/O)."""
    return seal_bytes(key, job_context(entry.job_id), _encoder.encode(entry))


def unpack_entry(key: bytes, job_id: str, raw: bytes) -> JobEntry:
    """The entry stored for ``job_id``; :class:`BadSeal` when forged, tampered with or unreadable (no I/O)."""
    body = open_sealed(key, job_context(job_id), raw)
    try:
        entry = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Unreadable(f"fleet:job:{job_id}: sealed but unreadable here ({exc})") from None
    if entry.job_id != job_id:  # cannot happen with a good MAC; never run another job's spec
        raise BadSeal(f"fleet:job:{job_id}: the spec is job {entry.job_id}'s")
    return entry
