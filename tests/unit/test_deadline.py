"""When a job's time limit ends it: deadlines, guards and the idle timeout (sans-I/O)."""

from __future__ import annotations

from ccxd.supervision.deadline import due, guard_note


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
