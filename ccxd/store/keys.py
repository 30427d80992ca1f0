"""Every Redis key ccxd uses; nothing outside the store knows these names.

Keys that belong to one daemon carry its node id, so several daemons can share
one Redis; the indexes that span nodes name a job as ``node/id``.

A name someone chose (a session, a node id) enters a key only through
:func:`part`, which percent-encodes ``:`` and every other character that could
end a component or mean something to Redis tools: no name reaches another key
(``session:x:jobs`` is session ``x``'s job list, session ``x:jobs`` is
``session:x%3Ajobs``).  Plain names are unchanged, so the keys of a store
written before names were escaped still match; the few that held such a
character are renamed once on open (:func:`legacy_renames`, ``store/migrate.py``).
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "ccxd:v1"

_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f%:*?\[\]{}\\]")


def part(name: str) -> str:
    """``name`` as one key component (no I/O).

    ``%``, ``:``, glob and hash-tag characters, spaces and control characters
    become ``%XX`` (UTF-8, as in URLs), everything else stays as is.  The
    result never holds ``:``, and distinct names give distinct parts.
    """
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


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
    return f"{PREFIX}:node:{part(node)}:job:{part(job_id)}"


def output(node: str, job_id: str) -> str:
    """STREAM: the job's output, entry id ``offset+1-0``, fields s (stream) and d (data)."""
    return f"{PREFIX}:node:{part(node)}:out:{part(job_id)}"


def node_jobs(node: str) -> str:
    """ZSET of the node's job ids scored by queue time."""
    return f"{PREFIX}:node:{part(node)}:jobs"


def node_active(node: str) -> str:
    """SET of the node's jobs that have not finished (for crash recovery)."""
    return f"{PREFIX}:node:{part(node)}:active"


def claude_state(node: str) -> str:
    """STRING: the node's Claude retry state (usage-limit block, pending attempts), each sealed.

    The seal is an HMAC with the daemon's store key (``store/integrity.py``); JSON, tag ``sealed-1``.
    """
    return f"{PREFIX}:node:{part(node)}:claude"


def session(name: str) -> str:
    """HASH: created, last_active."""
    return f"{PREFIX}:session:{part(name)}"


def session_jobs(name: str) -> str:
    """ZSET of ``node/id`` of the session's jobs scored by queue time."""
    return f"{PREFIX}:session:{part(name)}:jobs"


NAMES_ESCAPED = f"{PREFIX}:names-escaped"
"""STRING, set once the keys of names written before :func:`part` existed were renamed."""


def legacy_renames(
    sessions: list[str], nodes: dict[str, list[str]]
) -> list[tuple[str, str, str]]:
    """(old key, new key, type) for the keys the unescaped scheme gave these names (no I/O).

    ``nodes`` maps a node id to its job ids.  Only names that :func:`part`
    changes have keys to rename.  An old key may hold another name's value (the
    collisions escaping ends), so a rename applies only if the old key has the type.
    """
    out: list[tuple[str, str, str]] = []
    for name in sessions:
        if part(name) != name:
            out.append((f"{PREFIX}:session:{name}", session(name), "hash"))
            out.append((f"{PREFIX}:session:{name}:jobs", session_jobs(name), "zset"))
    for node, ids in nodes.items():
        if part(node) == node:
            continue
        old = f"{PREFIX}:node:{node}"
        out.append((f"{old}:jobs", node_jobs(node), "zset"))
        out.append((f"{old}:active", node_active(node), "set"))
        out.append((f"{old}:claude", claude_state(node), "string"))
        for job_id in ids:
            out.append((f"{old}:job:{job_id}", job(node, job_id), "string"))
            out.append((f"{old}:out:{job_id}", output(node, job_id), "stream"))
    return out


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


def fleet_job(job_id: str) -> str:
    """HASH of a fleet job (``ccxd/fleet/keys.py``); its ``epoch`` fences the job's writes."""
    return f"{PREFIX}:fleet:job:{part(job_id)}"


def member(node: str, job_id: str) -> str:
    """How cross-node indexes name a job."""
    return f"{node}/{job_id}"
