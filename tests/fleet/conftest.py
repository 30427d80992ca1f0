"""Fixtures for the fleet tests: one three-node fleet in network namespaces per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.harness import NAMES, Fleet

LEASE = 3.0
"""The nodes' node_lease in these tests (seconds): short, so a lost node is noticed quickly."""
SLOTS = 8
"""The nodes' node_slots."""


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Nodes A, B and C (labels ``zone`` = a/b/c, C also ``gpu = 1``), all ``up``, shared by a module.

    A test that kills, partitions or cordons a node puts it back (``ensure_whole``).
    """
    with Fleet(lease=LEASE, slots=SLOTS) as f:
        f.wait_states(dict.fromkeys(NAMES, "up"), 15 + LEASE)
        yield f


def ensure_whole(f: Fleet) -> None:
    """Every link up, every daemon running and every node ``up`` again (after a test that broke one)."""
    for name, node in f.nodes.items():
        if f.net is not None:
            f.link_up(name)
        if not node.running:
            node.restart()
    for name in f.nodes:
        states = f.node_states()
        if states.get(name) == "cordoned":
            f["A"].call("node.uncordon", {"name": name})
    f.wait_states(dict.fromkeys(f.nodes, "up"), 3 * LEASE + 10)
