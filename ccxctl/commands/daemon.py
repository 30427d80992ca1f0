"""The daemon itself: ``status``, ``shutdown``, ``reload``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ccxctl import cli
from ccxctl.cli import JsonOpt
from ccxctl.render import emit_json, human_duration
from ccxd.protocol import (
    EmptyParams,
    ReloadResult,
    ShutdownParams,
    ShutdownResult,
)

__all__ = ["reload", "shutdown", "status"]


def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The daemon's version, pid, uptime, jobs by state, listeners, loop lag and store."""
    st = cli.with_client(ctx, lambda c: c.status())
    if json_out:
        emit_json(st)
        return
    jobs = ", ".join(f"{n} {state}" for state, n in st.jobs.items() if n) or "none"
    rows = [
        ["version", st.version],
        ["pid", str(st.pid)],
        ["node", st.node],
        *([["fleet", st.fleet]] if st.fleet else []),
        ["uptime", human_duration(st.uptime)],
        ["jobs", jobs],
        ["listeners", ", ".join(f"{x.kind} {x.address}" for x in st.listeners)],
        ["loop lag", f"{st.loop_lag_ms:.1f} ms"],
        ["connections", str(st.connections)],
    ]
    if st.fd_limit:
        rows.append(["descriptors", f"limit {st.fd_limit}"])
    turned = st.refused
    ws_turned = turned.ws_handshakes + turned.ws_peer + turned.ws_descriptors
    if ws_turned:
        rows.append(
            [
                "turned away",
                f"{ws_turned} WebSocket connections before login ({turned.ws_handshakes} ws_handshakes_max, "
                f"{turned.ws_peer} ws_handshakes_per_peer, {turned.ws_descriptors} fd_reserve)",
            ]
        )
    if turned.unix_max_connections or turned.unix_descriptors:
        rows.append(
            [
                "turned away",
                f"{turned.unix_max_connections} Unix clients (max_connections), "
                f"{turned.unix_descriptors} (out of descriptors)",
            ]
        )
    rows += [
        ["shell", st.shell],
        ["shim", st.shim or "unknown (a daemon older than this ccxctl)"],
        ["store", st.store],
    ]
    health = st.store_health
    if health.refused:
        rows.append(["refused", f"{health.refused} store writes; last: {health.last_refused}"])
    if health.journal_dropped:
        full = "journal full, " if health.journal_full else ""
        rows.append(["journal", f"{full}{health.journal_dropped} writes dropped (journal_max_bytes)"])
    rows += [
        ["cgroups", st.cgroups],
        ["hooks", str(st.hooks)],
    ]
    for m in st.metrics:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(m.reasons.items()))
        mean = m.duration_sum / m.count if m.count else 0.0
        rows.append(["metrics", f"{m.count}x {m.signature[:60]}  ({reasons}; mean {human_duration(mean)})"])
    if sys.stdout.isatty():
        for key, value in rows:
            print(f"{key + ':':<13}{value}")
    else:
        for key, value in rows:
            print(f"{key}\t{value}")


def shutdown(
    ctx: typer.Context,
    mode: Annotated[
        str | None,
        typer.Option(help="cancel, drain, or leave (jobs run on for the next daemon); default: on_stop."),
    ] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds jobs may finish (drain).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Stop the daemon; --mode says what happens to running jobs."""
    if mode is not None and mode not in ("cancel", "drain", "leave"):
        raise typer.BadParameter("mode must be cancel, drain or leave", param_hint="--mode")
    params = ShutdownParams(mode=mode, drain_timeout=drain_timeout)  # type: ignore[arg-type]
    res: ShutdownResult = cli.with_client(ctx, lambda c: c.call("daemon.shutdown", params))
    if json_out:
        emit_json(res)
        return
    what = {"cancel": "cancelling", "drain": "draining", "leave": "leaving running"}[res.mode]
    print(f"ccxd is stopping ({what} {res.running} job{'s' if res.running != 1 else ''})")


def reload(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Re-read the config and hooks (as SIGHUP does); say what changed."""
    res: ReloadResult = cli.with_client(ctx, lambda c: c.call("daemon.reload", EmptyParams()))
    if json_out:
        emit_json(res)
    elif res.error is None:
        print("ccxd reloaded its config: " + (", ".join(res.changed) or "no changes"))
        if res.restart_needed:
            print("these settings take a restart to change: " + ", ".join(res.restart_needed))
    if res.error is not None:
        if not json_out:
            print(f"ccxctl: reload failed, ccxd keeps its config: {res.error}", file=sys.stderr)
        raise typer.Exit(1)
