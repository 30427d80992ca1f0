"""Placement and node-state rules (no I/O)."""

from __future__ import annotations

import pytest

from ccxd.fleet.placement import (
    bucket,
    effective_state,
    matches,
    mismatch,
    parse_state,
    rejoin_state,
    takes_jobs,
)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("high", "high"),
        ("normal", "normal"),
        ("low", "low"),
        (5, "high"),
        (1000, "high"),
        (4, "normal"),
        (0, "normal"),
        (-4, "normal"),
        (-5, "low"),
        (-1000, "low"),
    ],
)
def test_priority_buckets(priority: str | int, expected: str) -> None:
    assert bucket(priority) == expected


def test_unknown_priority_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        bucket("urgent")


def test_every_where_label_must_match() -> None:
    labels = {"zone": "a", "gpu": "1"}
    assert matches("A", labels, "up", {}, None)
    assert matches("A", labels, "up", {"zone": "a", "gpu": "1"}, None)
    assert not matches("A", labels, "up", {"zone": "b"}, None)
    assert not matches("A", labels, "up", {"zone": "a", "disk": "ssd"}, None)
    assert mismatch("A", labels, "up", {"zone": "b"}, None) == "node 'A' has zone='a', the job needs 'b'"
    assert mismatch("A", labels, "up", {"disk": "ssd"}, None) == "node 'A' has no label 'disk'"


def test_a_pin_names_the_only_node() -> None:
    assert matches("B", {}, "up", {}, "B")
    assert mismatch("A", {}, "up", {}, "B") == "the job is pinned to node 'B'"


@pytest.mark.parametrize("state", ["draining", "cordoned", "lost"])
def test_only_an_up_node_takes_jobs(state: str) -> None:
    assert takes_jobs("up")
    assert not takes_jobs(state)
    assert mismatch("A", {}, state, {}, None) == f"node 'A' is {state}"


def test_stored_state_parses_and_unknown_is_lost() -> None:
    assert parse_state("1765000000000000 cordoned") == (1765000000000000, "cordoned")
    assert parse_state(None) == (0, "lost")
    assert parse_state("12 bogus") == (12, "lost")


def test_a_node_past_its_lease_shows_lost() -> None:
    assert effective_state("up", 1000, 11_000, 10_000) == "up"
    assert effective_state("up", 1000, 11_001, 10_000) == "lost"
    assert effective_state("cordoned", 0, 20_000, 10_000) == "lost"


def test_a_drain_or_cordon_outlives_a_rejoin() -> None:
    assert rejoin_state("lost") == "up"
    assert rejoin_state("up") == "up"
    assert rejoin_state("draining") == "draining"
    assert rejoin_state("cordoned") == "cordoned"
