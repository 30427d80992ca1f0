"""The job state machine (ccxd.jobs.state)."""

from __future__ import annotations

import itertools

import pytest

from ccxd.jobs.state import TRANSITIONS, InvalidTransition, check_transition
from ccxd.protocol import JobState

Q, S, R, P, F = JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.PAUSED, JobState.FINISHED

# The life of a job as docs/protocol.md describes it.
LEGAL = {
    (Q, S),  # a slot is free
    (Q, F),  # cancelled while waiting
    (S, R),  # the process was spawned
    (S, F),  # failed to start, or cancelled before the spawn
    (R, P),  # job.pause / SIGSTOP
    (P, R),  # job.resume / SIGCONT
    (R, F),  # exited, killed, timed out, cancelled
    (P, F),  # cancelled or killed while paused
}


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL))
def test_legal_transitions_are_allowed(current: JobState, new: JobState) -> None:
    assert check_transition(current, new) is new


@pytest.mark.parametrize(("current", "new"), sorted(set(itertools.product(JobState, repeat=2)) - LEGAL))
def test_every_other_transition_is_refused(current: JobState, new: JobState) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(current, new)
    assert str(info.value) == f"a {current} job cannot become {new}"


def test_finished_is_final_and_every_state_can_reach_it_except_itself() -> None:
    assert TRANSITIONS[F] == frozenset()
    assert all(F in TRANSITIONS[s] for s in JobState if s is not F)


def test_the_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(JobState)
