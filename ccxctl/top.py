"""``ccxctl top``: running jobs and what they use, refreshed in place."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence

from ccxctl.render import human_duration, table
from ccxd.cgroups.limits import format_size
from ccxd.client import Client
from ccxd.protocol import JobInfo

__all__ = ["HEADERS", "resource_fields", "run_top", "top_rows"]

HEADERS = ["id", "state", "cpu%", "cpu", "mem", "peak", "limit", "pids", "io r/w", "time", "command"]
_ACTIVE = ("starting", "running", "paused")
_CLEAR = "\x1b[H\x1b[2J"


def resource_fields(info: JobInfo) -> dict[str, str]:
    """``limits`` and ``usage`` lines for ``ccxctl history show`` (empty when there are none)."""
    out: dict[str, str] = {}
    lim = info.limits
    if lim is not None and any(v is not None for v in (lim.memory, lim.cpus, lim.pids, lim.io_weight)):
        parts = []
        if lim.memory is not None:
            parts.append(f"memory {format_size(lim.memory)}")
        if lim.cpus is not None:
            parts.append(f"cpus {lim.cpus:g}")
        if lim.pids is not None:
            parts.append(f"pids {lim.pids}")
        if lim.io_weight is not None:
            parts.append(f"io weight {lim.io_weight}")
        if info.limits_unenforced:
            parts.append(f"(not enforced: {', '.join(info.limits_unenforced)})")
        out["limits"] = ", ".join(parts)
    u = info.usage
    if u is not None:
        out["usage"] = (
            f"cpu {u.cpu_seconds:.2f}s, memory peak {format_size(u.memory_peak)}, "
            f"pids peak {u.pids_peak}, io {format_size(u.io_read_bytes)} read "
            f"{format_size(u.io_write_bytes)} written"
            + (f", throttled {u.cpu_throttled:.2f}s" if u.cpu_throttled else "")
        )
    return out


def top_rows(jobs: Sequence[JobInfo]) -> list[list[str]]:
    """One row per active job, busiest CPU first (no I/O)."""
    active = [j for j in jobs if j.state in _ACTIVE]
    active.sort(key=lambda j: -(j.usage.cpu_percent if j.usage is not None else 0.0))
    rows = []
    for j in active:
        u = j.usage
        lim = j.limits
        limit = format_size(lim.memory) if lim is not None and lim.memory is not None else "-"
        if lim is not None and lim.cpus is not None:
            limit += f" {lim.cpus:g}cpu"
        cmd = j.command if isinstance(j.command, str) else " ".join(j.command)
        rows.append(
            [
                j.id,
                j.state,
                f"{u.cpu_percent:.0f}" if u is not None else "-",
                f"{u.cpu_seconds:.1f}s" if u is not None else "-",
                format_size(u.memory) if u is not None else "-",
                format_size(u.memory_peak) if u is not None else "-",
                limit,
                str(u.pids) if u is not None else "-",
                f"{format_size(u.io_read_bytes)}/{format_size(u.io_write_bytes)}" if u is not None else "-",
                human_duration(j.duration),
                cmd.replace("\n", " "),
            ]
        )
    return rows


async def run_top(client: Client, interval: float, once: bool) -> None:
    """Show the table every ``interval`` seconds (once when asked or not on a terminal)."""
    tty = sys.stdout.isatty() and not once
    while True:
        jobs: list[JobInfo] = []
        for state in _ACTIVE:
            jobs += await client.list(state=state, limit=10_000)
        rows = top_rows(jobs)
        if tty:
            width = shutil.get_terminal_size().columns
            sys.stdout.write(_CLEAR)
            print(f"ccxd top — {len(rows)} active job(s), every {interval:g}s, Ctrl-C quits")
            table(HEADERS, [[*r[:-1], r[-1][: max(10, width // 3)]] for r in rows])
        else:
            table(HEADERS, rows)
        sys.stdout.flush()
        if not tty:
            return
        await asyncio.sleep(interval)
