"""Timeout estimates from past runs (no I/O).

A job without an explicit timeout gets ``max(default, k × p95)`` of the
successful runs of its command signature.  Runs that timed out are *censored*:
they only say "at least this long", so they never count as successes, and the
estimate is never below ``k ×`` the longest of them.  With fewer than
``min_samples`` successful runs the estimate is the conservative bootstrap
value.  An estimate from runs is never below ``minimum``: a command that takes
milliseconds when the machine is idle can take far longer on a busy one, and
that must not be a timeout.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

__all__ = ["Estimate", "Sample", "estimate", "percentile"]


class Sample(Struct):
    """One past run."""

    duration: float
    ok: bool
    censored: bool


class Estimate(Struct):
    """A timeout and a sentence saying where it came from."""

    timeout: float | None
    basis: str


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0–100) of non-empty ``values``."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def estimate(
    samples: Sequence[Sample],
    *,
    default: float | None,
    k: float,
    min_samples: int,
    bootstrap: float | None,
    minimum: float = 0.0,
) -> Estimate:
    """The timeout for a job of a signature with these ``samples``."""
    ok = [s.duration for s in samples if s.ok and not s.censored]
    censored = [s.duration for s in samples if s.censored]
    if len(ok) < min_samples:
        base = bootstrap
        basis = f"bootstrap ({len(ok)} of {min_samples} successful runs known)"
        if censored:
            floor = k * max(censored)
            if base is None or floor > base:
                base, basis = floor, f"{k:g} × longest timed-out run ({max(censored):.3g}s)"
        if default is not None and (base is None or default > base):
            return Estimate(default, "default_timeout")
        return Estimate(base, basis)
    p95 = percentile(ok, 95)
    value = k * p95
    basis = f"{k:g} × p95 {p95:.3g}s of {len(ok)} successful runs"
    if censored and k * max(censored) > value:
        value = k * max(censored)
        basis = f"{k:g} × longest timed-out run ({max(censored):.3g}s; p95 of {len(ok)} runs is {p95:.3g}s)"
    if default is not None and default > value and default >= minimum:
        return Estimate(default, f"default_timeout (estimate {value:.3g}s is lower)")
    if value < minimum:
        return Estimate(minimum, f"estimate_min ({basis} is {value:.3g}s)")
    return Estimate(round(value, 3), basis)
