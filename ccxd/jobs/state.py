"""The job state machine (no I/O): which transitions are legal."""

from __future__ import annotations

from typing import Final

from ccxd.protocol import JobState

__all__ = ["TRANSITIONS", "InvalidTransition", "check_transition"]

TRANSITIONS: Final[dict[JobState, frozenset[JobState]]] = {
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.FINISHED}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.FINISHED}),
    JobState.RUNNING: frozenset({JobState.PAUSED, JobState.FINISHED}),
    JobState.PAUSED: frozenset({JobState.RUNNING, JobState.FINISHED}),
    JobState.FINISHED: frozenset(),
}


class InvalidTransition(Exception):
    """A job was asked to move to a state it cannot reach from where it is."""


def check_transition(current: JobState, new: JobState) -> JobState:
    """Return ``new`` if a job in ``current`` may move there, else raise."""
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} job cannot become {new}")
    return new
