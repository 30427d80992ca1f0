"""Small statistics without I/O: medians, percentiles, interleaved runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["interleave", "median", "percentile"]

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); NaN for none."""
    if not values:
        return math.nan
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) by linear interpolation; NaN for none."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def interleave(runs: int, contenders: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Run every contender once per round (A B A B …) and collect each one's results.

    Alternating within a round spreads slow drifts of a shared machine (other
    load, thermal, page cache) over every contender instead of one.
    """
    results: dict[str, list[T]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            results[name].append(fn())
    return results
