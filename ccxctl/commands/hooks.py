"""``ccxctl hooks …``: the loaded hooks, and dry runs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_json, table
from ccxd.protocol import (
    EmptyParams,
    HookList,
    HookTestParams,
    HookTestResult,
)

__all__ = ["hooks_app"]

hooks_app = typer.Typer(help="Hooks: what is loaded, and dry runs.", no_args_is_help=True)


@hooks_app.command("list")
def hooks_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Loaded hooks in running order: point, name, kind, policy, timeout, matchers, source."""
    res: HookList = cli.with_client(ctx, lambda c: c.call("hooks.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    if not res.enabled:
        print("hooks are disabled (hooks_enabled = false)")
    rows = []
    for h in res.hooks:
        m = h.match
        match = " ".join(
            part
            for part in (
                f"command~{m.command}" if m.command else "",
                f"kind={m.kind}" if m.kind else "",
                f"session={m.session}" if m.session else "",
                f"tags={','.join(m.tags)}" if m.tags else "",
            )
            if part
        )
        rows.append([h.point, h.name, h.kind, h.policy, f"{h.timeout:g}s", match or "*", h.source])
    table(["point", "name", "kind", "policy", "timeout", "match", "source"], rows)
    for h in res.hooks:  # async hooks that blocked the daemon's event loop (runner.py)
        if h.disabled:
            print(f"{h.point} {h.name}: DISABLED: {h.disabled}")
        elif h.loop_blocks:
            print(f"{h.point} {h.name}: blocked the event loop past its timeout {h.loop_blocks} times")
    for problem in res.errors:
        sys.stderr.write(f"ccxctl: not loaded: {problem}\n")


@hooks_app.command("test")
def hooks_test(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name (as hooks list shows it).")],
    command: Annotated[str, typer.Option("--command", "-c", help="The command of the pretend job.")],
    point: Annotated[str | None, typer.Option(help="pre_execution, post_execution or error.")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory of the pretend job.")] = None,
    env: Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")] = [],  # noqa: B006
    session: Annotated[str | None, typer.Option(help="Session of the pretend job.")] = None,
    tag: Annotated[list[str], typer.Option("--tag", help="Tag (repeatable).")] = [],  # noqa: B006
    exit_code: Annotated[int, typer.Option(help="Post/error hooks: the pretend exit code.")] = 0,
    reason: Annotated[str, typer.Option(help="Post/error hooks: why the pretend job ended.")] = "exited",
    json_out: JsonOpt = False,
) -> None:
    """Dry run: show what one hook would do to a job running COMMAND (the job is not run)."""
    import msgspec

    try:
        params = msgspec.convert(
            {
                "name": name,
                "command": command,
                "point": point,
                "cwd": cwd,
                "env": cli.parse_env(env),
                "session": session,
                "tags": tag,
                "exit_code": exit_code,
                "reason": reason,
            },
            HookTestParams,
        )
    except msgspec.ValidationError as exc:
        raise cli.fail(f"invalid option: {exc}", 2) from None
    res: HookTestResult = cli.with_client(ctx, lambda c: c.call("hooks.test", params))
    if json_out:
        emit_json(res)
        return
    if not res.matched or res.outcome is None:
        print(f"{name}: does not match this job (it would not run)")
        return
    o = res.outcome
    print(
        f"{o.name} ({o.point}): {o.result} in {o.duration * 1000:.1f} ms"
        + (f" - {o.message}" if o.message else "")
    )
    if o.policy is not None:
        print(f"policy {o.policy}: " + ("the job would be refused" if res.refused else "the job would go on"))
    elif res.refused:
        print("the job would be refused")
    for key, value in res.changes.items():
        print(f"  {key} = {msgspec.json.encode(value).decode()}")
    for key, value in res.annotations.items():
        print(f"  annotation {key} = {msgspec.json.encode(value).decode()}")
    if res.refused:
        raise typer.Exit(1)
