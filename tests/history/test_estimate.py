from ccxd.history.estimate import Sample, estimate, percentile


def ok(*durations: float) -> list[Sample]:
    return [Sample(d, True, False) for d in durations]


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([10], 95) == 10
    assert abs(percentile(list(range(1, 101)), 95) - 95.05) < 1e-9


def test_unknown_command_gets_the_bootstrap() -> None:
    e = estimate([], default=None, k=3, min_samples=5, bootstrap=3600)
    assert e.timeout == 3600 and e.basis.startswith("bootstrap")


def test_k_times_p95_of_successes() -> None:
    e = estimate(ok(*[10.0] * 20), default=None, k=3, min_samples=5, bootstrap=3600)
    assert e.timeout == 30 and "p95" in e.basis


def test_default_wins_when_larger() -> None:
    e = estimate(ok(*[1.0] * 20), default=60, k=3, min_samples=5, bootstrap=3600)
    assert e.timeout == 60 and e.basis.startswith("default_timeout")


def test_timeouts_are_censored_never_successes() -> None:
    # Ten quick successes, but two runs hit a 100 s timeout: they ran *at least* 100 s.
    samples = ok(*[2.0] * 10) + [Sample(100.0, False, True)] * 2
    e = estimate(samples, default=None, k=1.5, min_samples=5, bootstrap=3600)
    assert e.timeout == 150 and "timed-out" in e.basis


def test_failures_do_not_count_as_successes() -> None:
    samples = [Sample(1.0, False, False)] * 50
    e = estimate(samples, default=None, k=3, min_samples=5, bootstrap=900)
    assert e.timeout == 900


def test_a_command_of_milliseconds_is_not_timed_out_by_a_busy_machine() -> None:
    e = estimate(ok(*[0.004] * 20), default=None, k=3, min_samples=5, bootstrap=3600, minimum=10)
    assert e.timeout == 10 and e.basis.startswith("estimate_min (3 × p95 0.004s")
    slow = estimate(ok(*[60.0] * 20), default=None, k=3, min_samples=5, bootstrap=3600, minimum=10)
    assert slow.timeout == 180, "the minimum only ever raises an estimate"


def test_with_a_silence_window_an_estimate_is_a_guard_of_at_least_the_floor() -> None:
    # `make test` takes 1 s: its estimate is 3 s, but as a guard it waits out the floor.
    e = estimate(ok(*[1.0] * 5), default=None, k=3, min_samples=5, bootstrap=3600, floor=600, silence=300)
    assert (e.timeout, e.silence) == (600, 300)
    assert e.basis == "estimate_floor (estimate 3s: 3 × p95 1s of 5 successful runs)"
    long = estimate(
        ok(*[400.0] * 5), default=None, k=3, min_samples=5, bootstrap=3600, floor=600, silence=300
    )
    assert (long.timeout, long.silence) == (1200, 300) and long.basis.startswith("3 × p95 400s")
    unknown = estimate([], default=None, k=3, min_samples=5, bootstrap=3600, floor=600, silence=300)
    assert (unknown.timeout, unknown.silence) == (3600, 300) and unknown.basis.startswith("bootstrap")


def test_default_timeout_stays_a_deadline_and_no_silence_means_the_old_deadlines() -> None:
    # default_timeout is the operator's wall-clock limit: never a guard, never floored.
    e = estimate(ok(*[1.0] * 5), default=60, k=3, min_samples=5, bootstrap=3600, floor=600, silence=300)
    assert (e.timeout, e.silence) == (60, None) and e.basis.startswith("default_timeout")
    old = estimate(ok(*[1.0] * 5), default=None, k=3, min_samples=5, bootstrap=3600, floor=600)
    assert (old.timeout, old.silence) == (3, None)
    none = estimate([], default=None, k=3, min_samples=5, bootstrap=None, floor=600, silence=300)
    assert (none.timeout, none.silence) == (None, None)
