"""Hooks (ccxd/hooks/) on the wire: what a hook did, what is loaded, dry runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from ccxd.protocol.common import JobReason

__all__ = [
    "CommandMetrics",
    "HookDescription",
    "HookEvent",
    "HookList",
    "HookMatch",
    "HookOutcome",
    "HookPointName",
    "HookPolicy",
    "HookResultName",
    "HookTestParams",
    "HookTestResult",
]

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
