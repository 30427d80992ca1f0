"""The benchmark cases, in the order of issue 9's goals."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Context
from bench.report import Row

Case = Callable[[Context], list[Row]]


def registry() -> dict[str, Case]:
    """Every case by name, in the order they run."""
    from bench.cases import fleet, history, jobs, latency, restart, scale, soak, stream, websocket

    return {
        "unix-stream": stream.unix_stream,
        "ws-stream": websocket.ws_stream,
        "ws-lines": websocket.ws_lines,
        "jobs": jobs.job_throughput,
        "cli-start": jobs.cli_start,
        "latency": latency.latency,
        "scale": scale.scale,
        "history": history.history,
        "persistence": stream.persistence_cost,
        "restart": restart.restart,
        "fleet-dispatch": fleet.fleet_dispatch,
        "fleet-throughput": fleet.fleet_throughput,
        "fleet-attach": fleet.fleet_attach,
        "fleet-loss": fleet.fleet_loss,
        "soak": soak.soak,  # only with --soak (or --only soak)
    }
