"""First run and agents: ``init``, ``doctor``, ``mcp``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt

__all__ = ["doctor", "init", "mcp_cmd"]


ConfigOpt = Annotated[
    str | None, typer.Option("--config", help="Config file (default: $XDG_CONFIG_HOME/ccxd/config.toml).")
]


def init(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replace existing files without asking.")] = False,
) -> None:
    """Write a commented default config and the token; install and enable the systemd user units."""
    from pathlib import Path

    from ccxctl.firstrun.init import run_init

    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return typer.confirm(question, default=False)

    raise typer.Exit(run_init(Path(config) if config else None, ask, print))


def doctor(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Check the installation, one line each, with the fix for what is wrong (exit 1 on a failure)."""
    from pathlib import Path

    from ccxctl.firstrun.doctor import run_checks

    raise typer.Exit(run_checks(Path(config) if config else None, print, as_json=json_out))


def mcp_cmd(ctx: typer.Context) -> None:
    """Serve ccxd's tools to an AI agent over MCP on stdin/stdout (claude mcp add ccxd -- ccxctl mcp)."""
    try:
        from ccxd.mcp.stdio import serve_stdio
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith(("mcp", "pydantic", "anyio")):
            raise
        raise cli.fail("`ccxctl mcp` needs the MCP SDK: pip install 'ccxd[mcp]'") from None
    target = cli.target(ctx)
    serve_stdio(target.url or target.socket, target.token_file)
