"""The node.* handlers over the dispatcher: which state each method asks for, and what a client reads back.

The control here is a stand-in for the fleet's registry with two nodes; what a real
lone daemon answers is tested through ccxctl (tests/ccxctl/test_nodes.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ccxd.errors import UnknownNode
from ccxd.protocol import NodeInfo, NodeState
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.rpc.node_methods import SingleNode, register_node_methods


class TwoNodes:
    """A fleet of ``b`` and ``a`` (listed in that order: the reply is sorted by name)."""

    def __init__(self) -> None:
        self.states: dict[str, NodeState] = {"b": "up", "a": "up"}

    async def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(name=n, slots=2, state=s) for n, s in self.states.items()]

    async def set_state(self, name: str, state: NodeState) -> NodeInfo:
        if name not in self.states:
            raise UnknownNode(name)
        self.states[name] = state
        return NodeInfo(name=name, slots=2, state=state)


async def call(d: Dispatcher, method: str, params: dict[str, object] | None = None) -> Any:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params else {})}
    reply = await d.handle(msgspec.json.encode(request), None)
    assert reply is not None
    return msgspec.json.decode(reply)


async def test_each_method_sets_its_state_and_answers_the_node():
    control, d = TwoNodes(), Dispatcher()
    register_node_methods(d, control)
    listed = await call(d, "node.list")
    assert [(n["name"], n["state"]) for n in listed["result"]["nodes"]] == [("a", "up"), ("b", "up")]
    for method, state in [("node.drain", "draining"), ("node.cordon", "cordoned"), ("node.uncordon", "up")]:
        reply = await call(d, method, {"name": "a"})
        assert reply["result"]["state"] == state and control.states["a"] == state
    assert control.states["b"] == "up"


async def test_an_unknown_node_is_error_32012_with_its_name():
    d = Dispatcher()
    register_node_methods(d, TwoNodes())
    reply = await call(d, "node.cordon", {"name": "zz"})
    assert reply["error"] == {
        "code": -32012,
        "message": "no node named 'zz' (ccxctl nodes lists them)",
        "data": {"name": "zz"},
    }


async def test_a_lone_daemon_lists_itself_with_its_running_jobs_and_refuses_to_drain():
    running = [2]
    d = Dispatcher()
    register_node_methods(d, SingleNode("solo", {"os": "debian"}, 8, lambda: running[0]))
    node = (await call(d, "node.list"))["result"]["nodes"][0]
    assert (node["name"], node["state"], node["used"], node["slots"], node["labels"]) == (
        "solo", "up", 2, 8, {"os": "debian"}
    )  # fmt: skip
    running[0] = 5
    assert (await call(d, "node.list"))["result"]["nodes"][0]["used"] == 5
    refused = (await call(d, "node.drain", {"name": "solo"}))["error"]
    assert refused["code"] == -32602
    assert "node.drain needs fleet mode (fleet = true)" in refused["message"]
    assert (await call(d, "node.uncordon", {"name": "other"}))["error"]["code"] == -32012
