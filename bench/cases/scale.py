"""Goal 6: 10,000 running jobs with 10,000 WebSocket subscribers — memory, idle CPU, start and stop, fds after."""

from __future__ import annotations

import time

from bench.daemon import BenchDaemon, proc_cpu_seconds, proc_fds, proc_rss_kib
from bench.harness import Context, finish_client, read_json_line
from bench.report import Row

__all__ = ["scale"]

JOB = "print ready; sleep 3600"
FDS_PER_PAIR = 5
"""Descriptors the daemon holds per running job and its WebSocket subscriber, rounded up (80 for 20 on 7 Dec 2026)."""
FD_RESERVE = 0.25
"""The share of its descriptors the daemon keeps from WebSocket clients (``fd_reserve``'s default)."""


def _fd_limit(pid: int) -> int:
    """The daemon's limit on open files (its soft limit, which it raised to the hard one)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def _cpu_percent(pid: int, window: float) -> float:
    c0, t0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (proc_cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


def scale(ctx: Context) -> list[Row]:
    """Hold N jobs and N WebSocket subscribers; sample the daemon; release them; check fds."""
    n = ctx.pick(10_000, 20)
    window = ctx.pick(10.0, 1.0)
    settings = {"max_concurrent_jobs": str(n + 100), "max_connections": str(n + 100)}
    nofile = int((1024 + FDS_PER_PAIR * n) / (1 - FD_RESERVE))
    with BenchDaemon(ctx.log_dir, settings, name="scale", nofile=nofile) as d:
        url, token = d.ws_url(), d.token
        # Warm up (imports, first WebSocket) so the baseline is a daemon that has served.
        ctx.client("ws-stream", url, token, "echo warm")
        time.sleep(1)
        base_fds, base_rss = proc_fds(d.pid), proc_rss_kib(d.pid)
        need = int((base_fds + FDS_PER_PAIR * n) / (1 - FD_RESERVE)) + 1
        if _fd_limit(d.pid) < need:
            raise RuntimeError(
                f"{n:,} jobs with subscribers need about {need:,} descriptors in the daemon, its limit is "
                f"{_fd_limit(d.pid):,} and could not be raised (no CAP_SYS_RESOURCE here): raise the hard "
                "limit (ulimit -Hn, LimitNOFILE=) before bench/run"
            )
        base_cpu = _cpu_percent(d.pid, window)
        client = ctx.spawn_client("ws-scale", url, token, str(n), JOB)
        try:
            ramp = read_json_line(client, 600)["ramp_seconds"]
            time.sleep(ctx.pick(3.0, 0.5))  # let the ramp's garbage go
            held_fds, held_rss = proc_fds(d.pid), proc_rss_kib(d.pid)
            counts = d.status()["jobs"]
            idle_cpu = _cpu_percent(d.pid, window)
        finally:
            stop = finish_client(client, timeout=900)
        deadline = time.monotonic() + 30
        while proc_fds(d.pid) > base_fds and time.monotonic() < deadline:
            time.sleep(0.1)
        after_fds = proc_fds(d.pid)
        after_rss = proc_rss_kib(d.pid)
    running = counts.get("running", 0)
    if running < n:
        raise RuntimeError(f"only {running} of {n} jobs were running at once")
    mib = 1024.0
    peak = d.max_rss_kib / mib
    return [
        Row(
            case="6 Scale",
            metric=f"daemon RSS, {n:,} running jobs + {n:,} WebSocket subscribers",
            unit="MiB",
            value=held_rss / mib,
            peer="same daemon idle, before",
            peer_value=base_rss / mib,
            ratio=held_rss / base_rss,
            ratio_label="×",
            goal=300.0,
            higher_is_better=False,
            goal_on_value=True,
            note=f"{(held_rss - base_rss) / n:.1f} KiB per job+subscriber; peak RSS (time -v) {peak:.1f} MiB; "
            f"RSS after release {after_rss / mib:.1f} MiB; starting all took {ramp:.1f} s, "
            f"cancelling all {stop['stop_seconds']:.1f} s"
            + (
                f" ({stop['lost_connections']} client connections timed out meanwhile)"
                if stop["lost_connections"]
                else ""
            ),
        ),
        Row(
            case="6 Scale",
            metric=f"start {n:,} jobs, each with a WebSocket subscriber, to every first output",
            unit="s",
            value=ramp,
            peer="limit",
            peer_value=30.0,
            ratio=ramp / 30.0,
            ratio_label="of the limit",
            goal=30.0,
            higher_is_better=False,
            goal_on_value=True,
            note="one client process, 8 handshakes at a time (under ws_handshakes_per_peer)",
        ),
        Row(
            case="6 Scale",
            metric=f"cancel all {n:,} jobs, to every job.finished",
            unit="s",
            value=stop["stop_seconds"],
            peer="limit",
            peer_value=10.0,
            ratio=stop["stop_seconds"] / 10.0,
            ratio_label="of the limit",
            goal=10.0,
            higher_is_better=False,
            goal_on_value=True,
        ),
        Row(
            case="6 Scale",
            metric=f"idle CPU with {n:,} quiet jobs + subscribers ({window:g} s window)",
            unit="% of a core",
            value=idle_cpu,
            peer="same daemon idle, before",
            peer_value=base_cpu,
            ratio=idle_cpu / base_cpu if base_cpu else float("nan"),
            ratio_label="×",
            goal=2.0,
            higher_is_better=False,
            goal_on_value=True,
        ),
        Row(
            case="6 Scale",
            metric="file descriptors after every job and subscriber ended",
            unit="fds",
            value=after_fds,
            peer="baseline (before)",
            peer_value=base_fds,
            ratio=after_fds - base_fds,
            ratio_label="extra",
            goal=0,
            higher_is_better=False,
            note=f"{held_fds} fds while held",
        ),
    ]
