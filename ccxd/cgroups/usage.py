"""Turning raw samples into a job's usage: rates, peaks, totals (no I/O)."""

from __future__ import annotations

from ccxd.cgroups.base import RawSample
from ccxd.protocol import Usage

__all__ = ["next_usage"]


def next_usage(prev: Usage | None, raw: RawSample, now: float) -> Usage:
    """The usage after ``raw`` was read at ``now``, given the previous one.

    Totals never go down (a group emptied at the end reads lower for the none
    backend), peaks are the larger of the kernel's mark and every sample.
    """
    cpu = raw.cpu_seconds
    percent = 0.0
    if prev is not None:
        cpu = max(cpu, prev.cpu_seconds)
        elapsed = now - prev.sampled_at
        if elapsed > 0:
            percent = round(max(0.0, cpu - prev.cpu_seconds) / elapsed * 100, 1)
    mem_peak = max(raw.memory, raw.memory_peak or 0, prev.memory_peak if prev is not None else 0)
    pids_peak = max(raw.pids, prev.pids_peak if prev is not None else 0)
    return Usage(
        sampled_at=now,
        cpu_seconds=round(cpu, 6),
        cpu_percent=percent,
        memory=raw.memory,
        memory_peak=mem_peak,
        pids=raw.pids,
        pids_peak=pids_peak,
        io_read_bytes=max(raw.io_read_bytes, prev.io_read_bytes if prev is not None else 0),
        io_write_bytes=max(raw.io_write_bytes, prev.io_write_bytes if prev is not None else 0),
        cpu_throttled=raw.cpu_throttled,
        psi_cpu=raw.psi_cpu,
        psi_memory=raw.psi_memory,
        psi_io=raw.psi_io,
    )
