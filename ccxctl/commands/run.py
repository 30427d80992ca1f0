"""``ccxctl run`` and ``ccxctl claude``: start a job and follow it."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from ccxctl import cli
from ccxctl.runjob import run_job
from ccxctl.runopts import FLEET_OPTIONS, RUN_OPTIONS, OptionError, check_node, parse_where, run_options
from ccxd.protocol import StartParams

__all__ = ["RUN_SETTINGS", "claude", "run"]

RUN_SETTINGS: dict[str, Any] = {"allow_interspersed_args": False, "ignore_unknown_options": True}
"""``run``'s context: the words after the command are the command's, not ccxctl's."""


@cli.with_options(*(opt.name for opt in RUN_OPTIONS))
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The command (words are joined with spaces).")],
    **options: Any,
) -> None:
    """Run a job, stream its output, exit with its exit code (124 timeout, 130 Ctrl-C)."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise typer.BadParameter("a command is required", param_hint="COMMAND")
    target = cli.target(ctx)
    try:
        opts = run_options(command, options, target.socket, target.url, target.token_file)
    except OptionError as exc:
        raise cli.bad_option(exc) from None
    raise typer.Exit(run_job(opts))


@cli.with_options("group", "priority", "after", "after_any", "worktree", *FLEET_OPTIONS, "json_out")
def claude(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt (passed as one argument, no shell).")],
    model: Annotated[str | None, typer.Option(help="--model for the CLI.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="--max-turns for the CLI.")] = None,
    max_budget_usd: Annotated[
        float | None,
        typer.Option("--max-budget-usd", help="End the job once its cost passes this many USD."),
    ] = None,
    allowed_tools: Annotated[
        list[str] | None, typer.Option("--allowed-tools", help="A tool the CLI may use, repeatable.")
    ] = None,
    mcp_config: Annotated[str | None, typer.Option(help="--mcp-config: a file or JSON.")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this Claude session (same cwd!).")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory (default: the current one).")] = None,
    session: Annotated[str | None, typer.Option(help="Group the job under this ccxd session.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit in seconds (0: none).")] = None,
    partial: Annotated[
        bool, typer.Option("--include-partial-messages", help="Token-level events (see --json).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress on stderr.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the job id and return.")] = False,
    **options: Any,
) -> None:
    """Run Claude Code as a ccxd job; print its result (exit 1 with the error class on failure)."""
    from ccxctl.claude_cmd import claude_job

    try:
        where, node = parse_where(options["where"] or []), check_node(options["node"])
    except OptionError as exc:
        raise cli.bad_option(exc) from None
    params = StartParams(
        kind="claude",
        prompt=prompt,
        model=model,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
        allowed_tools=allowed_tools or [],
        mcp_config=mcp_config,
        resume=resume,
        cwd=os.path.abspath(cwd or os.getcwd()),
        session=session,
        timeout=timeout,
        include_partial_messages=partial,
        group=options["group"],
        priority=cli.priority(options["priority"]),  # type: ignore[arg-type]
        after=options["after"] or [],
        after_any=options["after_any"] or [],
        worktree=options["worktree"],
        where=where,
        node=node,
        retry_on_node_loss=bool(options["retry_on_node_loss"]),
    )
    json_out = bool(options["json_out"])
    raise typer.Exit(
        cli.with_client(
            ctx, lambda c: claude_job(c, params, json_out=json_out, verbose=verbose, detach=detach)
        )
    )
