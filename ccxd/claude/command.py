"""The argument list of a Claude job, built without a shell (no I/O).

A ``kind: "claude"`` request becomes ``claude -p PROMPT --output-format
stream-json --verbose ...`` from its members; nothing else is added behind the
caller's back: ``--dangerously-skip-permissions`` only when asked for (or the
config's ``claude_skip_permissions``), no API key unless the config has one.

Every Claude job that starts a new session gets a pre-assigned
``--session-id`` (a fresh UUID), so the session is known before the CLI says
anything; jobs that ``--resume``/``--continue`` or choose their own id keep
theirs (the session actually used is read back from ``init``/``result``).
"""

from __future__ import annotations

import os
import uuid

from msgspec import structs

from ccxd.protocol import StartParams

__all__ = [
    "add_budget",
    "add_session_id",
    "build_argv",
    "claude_params",
    "is_claude_argv",
    "wants_events",
]

_PROMPT_ARG_MAX = 100_000
"""Longer prompts go through stdin: Linux refuses a single argument over 128 KiB."""
_RESUMING = ("--resume", "-r", "--continue", "-c", "--session-id", "--fork-session")
_PRINT = ("-p", "--print")


def is_claude_argv(argv: list[str]) -> bool:
    """True when ``argv`` runs the ``claude`` program (any directory)."""
    return bool(argv) and os.path.basename(argv[0]) == "claude"


def build_argv(params: StartParams, program: str, skip_permissions: bool) -> list[str]:
    """``claude -p ...`` for a ``kind: "claude"`` request (without ``--session-id``)."""
    argv = [program, "-p", "--output-format", params.output_format]
    if params.output_format == "stream-json":
        argv.append("--verbose")  # the CLI refuses stream-json with -p without it
        if params.include_partial_messages:
            argv.append("--include-partial-messages")
    if params.model:
        argv += ["--model", params.model]
    if params.max_turns is not None:
        argv += ["--max-turns", str(params.max_turns)]
    if params.max_budget_usd is not None:
        argv += ["--max-budget-usd", str(params.max_budget_usd)]
    if params.resume:
        argv += ["--resume", params.resume]
    elif params.continue_session:
        argv.append("--continue")
    if params.permission_mode:
        argv += ["--permission-mode", params.permission_mode]
    skip = params.skip_permissions if params.skip_permissions is not None else skip_permissions
    if skip:
        argv.append("--dangerously-skip-permissions")
    argv += params.claude_args
    # Options that take several values last, each closed by the next option.
    if params.mcp_config:
        argv += ["--mcp-config", params.mcp_config]
    if params.allowed_tools:
        argv += ["--allowedTools", *params.allowed_tools]
    if params.disallowed_tools:
        argv += ["--disallowedTools", *params.disallowed_tools]
    if params.prompt is not None and not params.prompt_on_stdin:
        argv += ["--", params.prompt]  # after "--": a prompt starting with "-" stays a prompt
    return argv


def claude_params(params: StartParams, program: str, skip_permissions: bool) -> StartParams:
    """``params`` with ``command`` built from the Claude members when ``kind`` is ``claude``.

    Raises ``ValueError`` (a message for people) when the request is incomplete.
    Idempotent: the command is rebuilt from the members every time (a retry
    that edits ``prompt`` gets a new command).
    """
    if params.kind != "claude":
        if params.command is None:
            raise ValueError('command is required (or kind: "claude" with a prompt)')
        return params
    if params.prompt is None and not (params.resume or params.continue_session):
        raise ValueError("a claude job needs a prompt (or resume / continue_session)")
    if params.include_partial_messages and params.output_format != "stream-json":
        raise ValueError('include_partial_messages needs output_format "stream-json"')
    if params.shell is not None:
        raise ValueError("a claude job runs without a shell; leave shell unset")
    big = params.prompt is not None and len(params.prompt.encode()) > _PROMPT_ARG_MAX
    if big and params.input is None and not params.prompt_on_stdin:
        params = structs.replace(params, prompt_on_stdin=True)
    argv = build_argv(params, program, skip_permissions)
    stdin = params.prompt if params.prompt_on_stdin else params.input
    return structs.replace(params, command=argv, input=stdin)


def add_session_id(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` with ``--session-id UUID`` after the program, and the UUID.

    Left alone (``None``) when it is not a headless run (no ``-p``) or it
    resumes, continues or names its own session.
    """
    args = argv[1:]
    if not any(a in _PRINT for a in args):
        return argv, None
    if any(a in _RESUMING or a.startswith(tuple(f + "=" for f in _RESUMING)) for a in args):
        own = _value_of(args, "--session-id")
        return argv, own
    sid = str(uuid.uuid4())
    return [argv[0], "--session-id", sid, *args], sid


def add_budget(argv: list[str], usd: float | None) -> list[str]:
    """``argv`` with ``--max-budget-usd USD`` after the program, unless it has one or ``usd`` is None."""
    if usd is None or _value_of(argv[1:], "--max-budget-usd") is not None:
        return argv
    return [argv[0], "--max-budget-usd", str(usd), *argv[1:]]


def wants_events(argv: list[str]) -> bool:
    """True when the CLI was asked for ``--output-format stream-json``."""
    return _value_of(argv[1:], "--output-format") == "stream-json"


def _value_of(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
