"""Admission and timeout stretching under load (decisions without I/O; host readings in procfs)."""

from __future__ import annotations

from ccxd.cgroups.limits import format_size

__all__ = ["admission_block", "stretch_factor"]


def admission_block(
    available: int | None, load: float | None, cpus: int, min_memory: int | None, max_load: float | None
) -> str | None:
    """Why a queued job must wait now, or None when it may start."""
    if min_memory is not None and available is not None and available < min_memory:
        return f"memory: {format_size(available)} available < admit_min_memory {format_size(min_memory)}"
    if max_load is not None and load is not None:
        per_cpu = load / max(1, cpus)
        if per_cpu > max_load:
            return f"load: {per_cpu:.2f} per CPU > admit_max_load {max_load:.2f}"
    return None


def stretch_factor(load: float | None, cpus: int, max_factor: float) -> float:
    """How much to lengthen a timeout: the load per CPU above 1, capped at ``max_factor``."""
    if load is None or max_factor <= 1:
        return 1.0
    per_cpu = load / max(1, cpus)
    return min(max_factor, per_cpu) if per_cpu > 1 else 1.0
