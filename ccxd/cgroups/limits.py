"""Limit values: sizes like ``"2G"``, and merging request, defaults and hooks (no I/O)."""

from __future__ import annotations

import re

from ccxd.protocol import Limits

__all__ = ["format_size", "parse_size", "resolve_limits"]

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: int | str) -> int:
    """Bytes from ``2147483648``, ``"512M"``, ``"2G"``, ``"1.5GiB"`` (powers of 1024).

    Raises :class:`ValueError` with a message naming the value.
    """
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"size {value} must be at least 1 byte")
        return value
    m = _SIZE.match(value)
    if m is None:
        raise ValueError(f"size {value!r} is not a number of bytes such as 512M or 2G")
    number = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if number < 1:
        raise ValueError(f"size {value!r} must be at least 1 byte")
    return int(number)


def format_size(n: float) -> str:
    """``2147483648`` → ``"2.0G"``; short, for tables and messages."""
    size = float(n)
    for unit in ("", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{int(size)}" if unit == "" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}T"  # pragma: no cover - loop always returns


def resolve_limits(
    memory: int | str | None,
    cpus: float | None,
    pids: int | None,
    io_weight: int | None,
    defaults: Limits,
) -> Limits:
    """The request's limits, each falling back to the configured default."""
    mem = parse_size(memory) if memory is not None else defaults.memory
    return Limits(
        memory=mem,
        cpus=cpus if cpus is not None else defaults.cpus,
        pids=pids if pids is not None else defaults.pids,
        io_weight=io_weight if io_weight is not None else defaults.io_weight,
    )
