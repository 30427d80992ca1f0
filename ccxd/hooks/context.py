"""What a hook is given (:class:`HookContext`) and what it answers (:class:`HookResult`).

No I/O here.  A command hook receives the context as JSON on stdin; it also
carries the members Claude Code gives its own hooks (``hook_event_name``,
``session_id``, ``cwd``, ``tool_name: "Bash"``, ``tool_input.command``), so a
script written for a Claude Code ``PreToolUse`` Bash hook works unchanged.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ccxd.output.log import OutputLog
from ccxd.protocol import HookPointName, JobInfo, StartParams

__all__ = [
    "CLAUDE_EVENT_NAMES",
    "HookContext",
    "HookResult",
    "OutputSummary",
    "command_text",
    "job_kind",
    "make_context",
    "output_summary",
]

JobKind = Literal["shell", "claude"]

CLAUDE_EVENT_NAMES: dict[str, str] = {
    "pre_execution": "PreToolUse",
    "post_execution": "PostToolUse",
    "error": "PostToolUseFailure",
}
"""The Claude Code hook event each point corresponds to (``hook_event_name``)."""

_TAIL = 4096


class OutputSummary(Struct, kw_only=True):
    """A finished job's output in brief: sizes and the last few KiB of each stream."""

    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_bytes: int = 0
    cut: bool = False
    stdout_tail: str = ""
    """Up to the last 4 KiB of stdout (invalid UTF-8 replaced)."""
    stderr_tail: str = ""
    """Up to the last 4 KiB of stderr."""


class HookContext(Struct, kw_only=True):
    """Everything a hook knows about the job it runs for."""

    point: HookPointName
    job_id: str
    kind: JobKind
    """``claude`` for Claude Code jobs, ``shell`` for everything else."""
    command: str | list[str]
    cwd: str
    """The job's working directory (empty: the daemon's home directory)."""
    env: dict[str, str]
    """The environment the job asked for (the daemon's own environment is not included)."""
    session: str | None
    tags: list[str]
    peer: str
    params: dict[str, Any]
    """All ``job.start`` params; a pre hook's ``update`` changes these."""
    job: JobInfo | None = None
    """Post and error hooks: the job record as it is now."""
    output: OutputSummary | None = None
    """Post and error hooks: what the job printed."""
    error: str | None = None
    """Error hooks: ``failed_to_start``, ``timeout``, ``idle_timeout``, ``oom``, ``cancelled``,
    ``killed`` or ``retry_exhausted``."""
    dry_run: bool = False
    """True under ``hooks.test`` (``ccxctl hooks test``): nothing will run."""
    # The members Claude Code's own hooks receive.
    hook_event_name: str = ""
    session_id: str = ""
    tool_name: str = "Bash"
    tool_input: dict[str, Any] = {}
    tool_response: dict[str, Any] | None = None


class HookResult(Struct, kw_only=True, omit_defaults=True):
    """A hook's answer.  ``None`` from a Python hook means "nothing to do"."""

    block: bool = False
    """Refuse the job (pre hooks); ``reason`` reaches the client."""
    reason: str = ""
    update: dict[str, Any] = {}
    """Pre hooks: ``job.start`` params to change (``command``, ``cwd``, ``env``, ``timeout``,
    limits, …); ``env`` is merged into the job's environment, other fields replace."""
    annotations: dict[str, Any] = {}
    """Notes to add to the job record (``annotations``)."""
    message: str = ""
    """A line for the hook's outcome (shown by ``ccxctl``)."""

    @classmethod
    def allow(cls, message: str = "") -> HookResult:
        """Nothing to change."""
        return cls(message=message)

    @classmethod
    def deny(cls, reason: str) -> HookResult:
        """Refuse the job with ``reason``."""
        return cls(block=True, reason=reason)

    @classmethod
    def change(cls, message: str = "", **update: Any) -> HookResult:
        """Change the job's params (pre hooks)."""
        return cls(update=update, message=message)

    @classmethod
    def annotate(cls, message: str = "", **notes: Any) -> HookResult:
        """Add notes to the job record."""
        return cls(annotations=notes, message=message)


def command_text(command: str | list[str]) -> str:
    """The command as one string (argv lists joined with spaces), for matching and signatures."""
    return command if isinstance(command, str) else " ".join(command)


def job_kind(params: StartParams) -> JobKind:
    """``claude`` when the job asks for it (``kind``) or its program is ``claude``."""
    if params.kind is not None:
        return params.kind
    command = params.command or ""
    if isinstance(command, list):
        program = command[0]
    else:
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        # Skip leading VAR=value assignments and `exec`/`env`.
        words = [w for w in words if not ("=" in w and not w.startswith("="))]
        while words and words[0] in ("exec", "env", "command", "nohup"):
            words = words[1:]
        program = words[0] if words else ""
    return "claude" if os.path.basename(program) == "claude" else "shell"


def _tail(log: OutputLog, stream: int) -> str:
    pieces: list[bytes] = []
    size = 0
    seq = log.next_seq - 1
    while seq >= 0 and size < _TAIL:
        chunk = log.get(seq)
        if chunk is None:
            break
        if chunk.stream == stream:
            pieces.append(chunk.data)
            size += len(chunk.data)
        seq -= 1
    data = b"".join(reversed(pieces))[-_TAIL:]
    return data.decode("utf-8", errors="replace")


def output_summary(log: OutputLog) -> OutputSummary:
    """Sizes and stream tails of ``log`` (from memory; evicted output is not read back)."""
    return OutputSummary(
        stdout_bytes=log.stream_bytes[0],
        stderr_bytes=log.stream_bytes[1],
        output_bytes=log.size,
        cut=log.cut,
        stdout_tail=_tail(log, 0),
        stderr_tail=_tail(log, 1),
    )


def make_context(
    point: HookPointName,
    params: StartParams,
    job_id: str,
    *,
    peer: str = "",
    cwd: str | None = None,
    job: JobInfo | None = None,
    output: OutputSummary | None = None,
    error: str | None = None,
    dry_run: bool = False,
) -> HookContext:
    """Build the context a hook at ``point`` sees."""
    work_dir = cwd if cwd is not None else (params.cwd or "")
    response = None
    if job is not None:
        response = {
            "exit_code": job.exit_code,
            "signal": job.signal,
            "reason": job.reason.value if job.reason is not None else None,
            "stdout": output.stdout_tail if output is not None else "",
            "stderr": output.stderr_tail if output is not None else "",
            "interrupted": job.reason is not None and job.reason.value != "exited",
        }
    return HookContext(
        point=point,
        job_id=job_id,
        kind=job_kind(params),
        command=params.command or [],
        cwd=work_dir,
        env=dict(params.env),
        session=params.session,
        tags=list(params.tags),
        peer=peer,
        params=msgspec.to_builtins(params),
        job=job,
        output=output,
        error=error,
        dry_run=dry_run,
        hook_event_name=CLAUDE_EVENT_NAMES[point],
        session_id=params.session or job_id,
        tool_input={"command": command_text(params.command or [])},
        tool_response=response,
    )
