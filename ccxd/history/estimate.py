"""Timeout estimates from past runs (no I/O).

A job without an explicit timeout gets ``max(default, k × p95)`` of the
successful runs of its command signature.  Runs that timed out are *censored*:
they only say "at least this long", so they never count as successes, and the
estimate is never below ``k ×`` the longest of them.  With fewer than
``min_samples`` successful runs the estimate is the conservative bootstrap
value.  An estimate from runs is never below ``minimum``: a command that takes
milliseconds when the machine is idle can take far longer on a busy one, and
that must not be a timeout.

With a ``silence`` window an estimate is a *guard* against hangs, not a
deadline: it is never below ``floor`` and ends a job only once the job has also
written nothing for ``silence`` seconds (``ccxd/supervision/deadline.py``).  A
timeout that is ``default`` (the operator's number) stays a deadline.  A run
a guard ended is recorded as a failure, not censored: it had gone silent, which
says nothing of how long the command takes.
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
    silence: float | None = None
    """Set for a guard: the job is ended past ``timeout`` only after this long without output."""


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
    floor: float = 0.0,
    silence: float | None = None,
) -> Estimate:
    """The timeout for a job of a signature with these ``samples``.

    With ``silence``, an estimate (not ``default``) is a guard of at least ``floor`` seconds.
    """
    est, estimated = _estimate(
        samples, default=default, k=k, min_samples=min_samples, bootstrap=bootstrap, minimum=minimum
    )
    if silence is None or est.timeout is None or not estimated:
        return est
    if floor > est.timeout:
        return Estimate(floor, f"estimate_floor (estimate {est.timeout:.3g}s: {est.basis})", silence)
    return Estimate(est.timeout, est.basis, silence)


def _estimate(
    samples: Sequence[Sample],
    *,
    default: float | None,
    k: float,
    min_samples: int,
    bootstrap: float | None,
    minimum: float,
) -> tuple[Estimate, bool]:
    """The timeout, and whether it is an estimate (False: ``default``, or none)."""
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
            return Estimate(default, "default_timeout"), False
        return Estimate(base, basis), base is not None
    p95 = percentile(ok, 95)
    value = k * p95
    basis = f"{k:g} × p95 {p95:.3g}s of {len(ok)} successful runs"
    if censored and k * max(censored) > value:
        value = k * max(censored)
        basis = f"{k:g} × longest timed-out run ({max(censored):.3g}s; p95 of {len(ok)} runs is {p95:.3g}s)"
    if default is not None and default > value and default >= minimum:
        return Estimate(default, f"default_timeout (estimate {value:.3g}s is lower)"), False
    if value < minimum:
        return Estimate(minimum, f"estimate_min ({basis} is {value:.3g}s)"), True
    return Estimate(round(value, 3), basis), True
