"""Built-in ``claude_precheck`` pre hook: a Claude job fails fast when it could only hang or fail.

Refuses a Claude Code job at once, with a message saying what to do, when the
``claude`` program is not found, or when no credentials are visible: none of
``ANTHROPIC_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``, ``CLAUDE_CODE_OAUTH_TOKEN``,
Bedrock/Vertex switches (in the job's or the daemon's environment), an
``apiKeyHelper`` in ``settings.json``, or the login file
``$CLAUDE_CONFIG_DIR/.credentials.json`` (default ``~/.claude``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ccxd.hooks.context import HookContext, HookResult

__all__ = ["claude_precheck", "credentials_source", "find_claude"]

_ENV_CREDENTIALS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)


def find_claude(ctx: HookContext, env: dict[str, str]) -> str | None:
    """The ``claude`` program the job would run, or None."""
    if isinstance(ctx.command, list) and os.sep in ctx.command[0]:
        program = ctx.command[0]
        return program if os.access(program, os.X_OK) else None
    return shutil.which("claude", path=env.get("PATH", os.defpath))


def credentials_source(env: dict[str, str]) -> str | None:
    """Where the CLI would find credentials, or None."""
    for name in _ENV_CREDENTIALS:
        if env.get(name):
            return f"${name}"
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    config_dir = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
    if (config_dir / ".credentials.json").is_file():
        return str(config_dir / ".credentials.json")
    try:
        settings = json.loads((config_dir / "settings.json").read_text())
        if isinstance(settings, dict) and settings.get("apiKeyHelper"):
            return str(config_dir / "settings.json") + " (apiKeyHelper)"
    except (OSError, ValueError):
        pass
    return None


def claude_precheck(ctx: HookContext) -> HookResult:
    """Refuse a Claude job whose CLI is missing or not logged in (a plain function: file checks)."""
    env = {**os.environ, **ctx.env}
    program = find_claude(ctx, env)
    if program is None:
        return HookResult.deny(
            "the claude CLI is not installed or not on PATH (npm install -g @anthropic-ai/claude-code)"
        )
    source = credentials_source(env)
    if source is None:
        return HookResult.deny(
            "Claude Code is not logged in: run `claude` once and /login, or set ANTHROPIC_API_KEY"
        )
    return HookResult.allow(f"{program}; credentials from {source}")
