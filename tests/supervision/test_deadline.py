"""When a job's time limit ends it: deadlines, guards and the idle timeout (sans-I/O)."""

from __future__ import annotations

import asyncio
import time

from ccxd.protocol import JobState
from ccxd.supervision.deadline import LimitTimer, due, guard_note


def test_a_deadline_ends_the_job_at_its_time_whatever_it_prints() -> None:
    assert due(30, None, elapsed=10, quiet=0) == 20
    assert due(30, None, elapsed=30, quiet=0) <= 0


def test_a_guard_ends_only_a_job_past_its_time_and_silent() -> None:
    after, silence = 600.0, 300.0
    assert due(after, silence, elapsed=100, quiet=100) == 500  # too early, however silent
    assert due(after, silence, elapsed=900, quiet=10) == 290  # late, but it talks: look again then
    assert due(after, silence, elapsed=650, quiet=290) == 10
    assert due(after, silence, elapsed=900, quiet=300) <= 0  # late and silent: hung


def test_the_idle_timeout_is_a_guard_from_the_start() -> None:
    assert due(0.0, 5.0, elapsed=1, quiet=1) == 4
    assert due(0.0, 5.0, elapsed=9, quiet=5) <= 0


def test_the_note_says_which_rule_ended_the_job() -> None:
    note = guard_note(600, 300, elapsed=912.4, quiet=301.2)
    assert note == (
        "no output for 301s, 912s after the start (estimated timeout: ended only when silent for 300s after 600s)"
    )


class _Job:
    """The attributes of a Job that a LimitTimer reads."""

    def __init__(self) -> None:
        self.started_mono = self.last_output_mono = time.monotonic()
        self.finished = False
        self.stop_reason = None
        self.state = JobState.RUNNING


async def test_a_guard_timer_waits_while_output_comes_and_fires_once_in_the_silence() -> None:
    loop = asyncio.get_running_loop()
    job, fired = _Job(), []
    wakeups = []
    real_call_later = loop.call_later

    def counting_call_later(delay, callback, *args):  # type: ignore[no-untyped-def]
        if getattr(callback, "__func__", None) is LimitTimer._check:  # not asyncio.sleep's
            wakeups.append(delay)
        return real_call_later(delay, callback, *args)

    loop.call_later = counting_call_later  # type: ignore[method-assign]
    try:
        timer = LimitTimer(loop, job, 0.2, 0.15, lambda e, q: fired.append((e, q)))  # type: ignore[arg-type]
        for _ in range(40):  # 0.4 s of output, a chunk every 10 ms: past `after`, never silent
            await asyncio.sleep(0.01)
            job.last_output_mono = time.monotonic()
        assert fired == []
        assert len(wakeups) <= 4, "one timer, re-armed per silence window, not per chunk"
        await asyncio.sleep(0.3)  # silence
    finally:
        loop.call_later = real_call_later  # type: ignore[method-assign]
    [(elapsed, quiet)] = fired
    assert quiet >= 0.15 and elapsed >= 0.55
    timer.cancel()


async def test_a_guard_spares_a_paused_job() -> None:
    loop = asyncio.get_running_loop()
    job, fired = _Job(), []
    job.state = JobState.PAUSED
    timer = LimitTimer(loop, job, 0.05, 0.05, lambda e, q: fired.append(e), spare_paused=True)  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert fired == []
    job.state = JobState.RUNNING  # resumed, and still silent: now it is ended
    await asyncio.sleep(0.1)
    assert len(fired) == 1
    timer.cancel()
