"""A fleet's nodes (``ccxctl nodes``, ``nodes drain|cordon|uncordon NAME``) and ``ccxctl fleet-key``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_json, table
from ccxd.protocol import EmptyParams, NodeInfo, NodeList, NodeRef

__all__ = ["fleet_key", "node_rows", "nodes_app"]

nodes_app = typer.Typer(
    help="The nodes of a fleet (daemons sharing one Redis): list them, drain, cordon, uncordon.",
    invoke_without_command=True,
)


def age(seconds: float) -> str:
    """``3s ago``, ``4m05s ago``, ``2h03m ago`` (no I/O)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s ago"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m ago"


def node_rows(nodes: list[NodeInfo], now: float) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``ccxctl nodes`` (no I/O): slots as used/total, the heartbeat's age."""
    headers = ["name", "state", "labels", "slots", "load", "version", "heartbeat"]
    rows = [
        [
            n.name,
            n.state,
            ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-",
            f"{n.used}/{n.slots}",
            f"{n.load:.2f}",
            n.version or "-",
            age(now - n.heartbeat) if n.heartbeat else "-",
        ]
        for n in nodes
    ]
    return headers, rows


@nodes_app.callback()
def nodes_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every node: state, labels, slots used/total, load, version, last heartbeat."""
    if ctx.invoked_subcommand is not None:
        return
    res: NodeList = cli.with_client(ctx, lambda c: c.call("node.list", EmptyParams()))
    if json_out:
        emit_json(res.nodes)
        return
    table(*node_rows(res.nodes, time.time()))


def _set(ctx: typer.Context, method: str, name: str, json_out: bool) -> None:
    info: NodeInfo = cli.with_client(ctx, lambda c: c.call(method, NodeRef(name)))
    if json_out:
        emit_json(info)
        return
    print(f"{info.name}\t{info.state}\t{info.used}/{info.slots} slots used")


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The node's name (ccxctl nodes lists them).")]


@nodes_app.command("drain")
def drain(ctx: typer.Context, name: NameArg, json_out: JsonOpt = False) -> None:
    """Let the node finish its running jobs and take no new ones (uncordon undoes it)."""
    _set(ctx, "node.drain", name, json_out)


@nodes_app.command("cordon")
def cordon(ctx: typer.Context, name: NameArg, json_out: JsonOpt = False) -> None:
    """Take no new jobs on the node; its running jobs go on."""
    _set(ctx, "node.cordon", name, json_out)


@nodes_app.command("uncordon")
def uncordon(ctx: typer.Context, name: NameArg, json_out: JsonOpt = False) -> None:
    """Let a cordoned or draining node take jobs again."""
    _set(ctx, "node.uncordon", name, json_out)


def fleet_key(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="The file to write (it must not exist).")],
) -> None:
    """Write a new fleet key: 64 hex digits (32 random bytes), mode 0600; copy it to every node."""
    from ccxd.config import ConfigError, write_fleet_key

    try:
        write_fleet_key(path)
    except ConfigError as exc:
        raise cli.fail(str(exc)) from None
    setting = f"fleet_key_file = {json.dumps(str(path.absolute()))}"
    print(f"{path}: a new fleet key; copy it to every node (mode 0600) and set {setting}")
