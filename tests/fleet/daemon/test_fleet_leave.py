"""The fleet's lists: jobs queued from any node; a node stopped cleanly leaves, a cordoned one stays."""

from __future__ import annotations

import pytest

from tests.fleet.harness import Fleet, wait_until

pytestmark = pytest.mark.redis


def test_a_clean_stop_leaves_the_list_and_a_cordoned_node_keeps_its_place() -> None:
    with Fleet(netns=False, names=("A", "B", "C"), lease=3.0, slots=2) as fleet:
        wait_until(lambda: fleet.node_states() == {"A": "up", "B": "up", "C": "up"}, 10, "three nodes up")
        # A job queued on C for a cordoned node waits fleet-wide: A's ps lists it.
        fleet["A"].call("node.cordon", {"name": "B"})
        queued = fleet["C"].call("job.start", {"command": "echo waited", "node": "B"})
        listed = {j["id"]: j for j in fleet["A"].call("job.list", {"state": "queued"})["jobs"]}
        assert queued["id"] in listed and listed[queued["id"]].get("node", "") == ""
        fleet["A"].call("node.uncordon", {"name": "B"})
        wait_until(
            lambda: fleet["A"].call("job.get", {"job_id": queued["id"]})["state"] == "finished", 10, "it ran"
        )
        assert queued["id"] not in {j["id"] for j in fleet["A"].call("job.list", {"state": "queued"})["jobs"]}
        fleet["B"].stop()
        # Gone at once, not shown lost for good.
        assert "B" not in fleet.node_states()
        fleet["A"].call("node.cordon", {"name": "C"})
        fleet["C"].stop()
        assert fleet.node_states()["C"] in ("cordoned", "lost")
        fleet.restart("C")
        assert wait_until(lambda: fleet.node_states().get("C") == "cordoned", 10, "C back, cordoned")
        fleet.restart("B")
        assert wait_until(lambda: fleet.node_states().get("B") == "up", 10, "B back, up")
