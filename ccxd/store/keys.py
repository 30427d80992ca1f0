"""Every Redis key ccxd uses; nothing outside the store knows these names.

Keys that belong to one daemon carry its node id, so several daemons can share
one Redis; the indexes that span nodes name a job as ``node/id``.
"""

from __future__ import annotations

import hashlib

PREFIX = "ccxd:v1"

ALL_JOBS = f"{PREFIX}:jobs"
"""ZSET of every job of every node, ``node/id`` scored by queue time."""
JOB_NODES = f"{PREFIX}:job-node"
"""HASH job id → node id."""
SESSIONS = f"{PREFIX}:sessions"
"""ZSET of session names scored by last activity."""
SIGNATURES = f"{PREFIX}:signatures"
"""HASH signature hash → signature text."""

SIGNATURES_SEEN = f"{PREFIX}:signatures:seen"
"""ZSET signature hash → when a job of it last finished: past ``history_max_signatures``
the signatures seen longest ago are forgotten (run times, metrics, name)."""


def job(node: str, job_id: str) -> str:
    """STRING: the job's record (JSON of JobInfo)."""
    return f"{PREFIX}:node:{node}:job:{job_id}"


def output(node: str, job_id: str) -> str:
    """STREAM: the job's output, entry id ``offset+1-0``, fields s (stream) and d (data)."""
    return f"{PREFIX}:node:{node}:out:{job_id}"


def node_jobs(node: str) -> str:
    """ZSET of the node's job ids scored by queue time."""
    return f"{PREFIX}:node:{node}:jobs"


def node_active(node: str) -> str:
    """SET of the node's jobs that have not finished (for crash recovery)."""
    return f"{PREFIX}:node:{node}:active"


def claude_state(node: str) -> str:
    """STRING: the node's Claude retry state (JSON of ClaudeState: usage-limit block, pending attempts)."""
    return f"{PREFIX}:node:{node}:claude"


def session(name: str) -> str:
    """HASH: created, last_active."""
    return f"{PREFIX}:session:{name}"


def session_jobs(name: str) -> str:
    """ZSET of ``node/id`` of the session's jobs scored by queue time."""
    return f"{PREFIX}:session:{name}:jobs"


def signature_hash(signature: str) -> str:
    """Short stable hash of a command signature."""
    return hashlib.sha256(signature.encode()).hexdigest()[:20]


def durations(signature: str) -> str:
    """LIST of recent runs (msgpack) of one command signature, newest first."""
    return durations_of(signature_hash(signature))


def durations_of(sig_hash: str) -> str:
    """:func:`durations` by the signature's hash."""
    return f"{PREFIX}:sig:{sig_hash}"


METRICS = f"{PREFIX}:metrics"
"""ZSET of signature hashes scored by finished jobs (metrics hook)."""


def metrics(signature: str) -> str:
    """HASH of one signature's metrics: count, duration_sum, reason:R, exit:N (metrics hook)."""
    return metrics_of(signature_hash(signature))


def metrics_of(sig_hash: str) -> str:
    """:func:`metrics` by the signature's hash."""
    return f"{PREFIX}:metrics:{sig_hash}"


def member(node: str, job_id: str) -> str:
    """How cross-node indexes name a job."""
    return f"{node}/{job_id}"
