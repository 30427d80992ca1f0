"""The ``ccxctl`` typer app, assembled from the command families of :mod:`ccxctl.commands`.

Commands are listed in ``ccxctl --help`` in the order they are added here, then the groups.
"""

from __future__ import annotations

import typer

from ccxctl import cli, ui_cmd
from ccxctl.commands import daemon, follow, groups, history, hooks, jobs, nodes, run, setup, worktree

__all__ = ["app", "run_app"]

app = typer.Typer(
    name="ccxctl",
    help="Control the ccxd supervisor daemon: run jobs, follow them, read their history.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(cli.root_options)

app.command("run", context_settings=run.RUN_SETTINGS)(run.run)
app.command("claude")(run.claude)
app.command("attach")(follow.attach)
app.command("logs")(follow.logs)
app.command("ps")(jobs.ps)
app.command("cancel")(jobs.cancel)
app.command("pause")(jobs.pause)
app.command("resume")(jobs.resume)
app.command("signal")(jobs.signal_cmd)
app.command("top")(jobs.top)
app.command("status")(daemon.status)
app.command("shutdown")(daemon.shutdown)
app.command("reload")(daemon.reload)
app.command("wait")(groups.wait)
app.command("init")(setup.init)
app.command("doctor")(setup.doctor)
app.command("mcp")(setup.mcp_cmd)
app.command("ui")(ui_cmd.ui)
app.command("fleet-key")(nodes.fleet_key)

app.add_typer(history.history_app, name="history")
app.add_typer(history.sessions_app, name="sessions")
app.add_typer(hooks.hooks_app, name="hooks")
app.add_typer(groups.group_app, name="group")
app.add_typer(worktree.worktree_app, name="worktree")
app.add_typer(nodes.nodes_app, name="nodes")


def run_app(args: list[str]) -> int:
    """Run the typer app on ``args`` and return its exit code."""
    try:
        app(args=args, prog_name="ccxctl", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
