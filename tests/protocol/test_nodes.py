"""A fleet's part of the protocol: job.start's where/node/retry_on_node_loss, node.* params, NodeInfo.

Errors are what a client reads: msgspec's, with the path under ``$.params`` and the
form in words.
"""

from __future__ import annotations

import msgspec
import pytest

from ccxd.protocol import (
    HistoryParams,
    JobState,
    ListParams,
    NodeInfo,
    NodeList,
    NodeRef,
    StartParams,
    encode,
)
from ccxd.rpc.codec import decode_params


def start(**params: object) -> StartParams:
    decoded = decode_params("job.start", msgspec.Raw(msgspec.json.encode({"command": "true", **params})))
    assert isinstance(decoded, StartParams)
    return decoded


def refused(method: str, params: dict[str, object]) -> str:
    with pytest.raises(ValueError, match=r".") as err:
        decode_params(method, msgspec.Raw(msgspec.json.encode(params)))
    return str(err.value)


def test_where_node_and_retry_on_node_loss_decode_with_their_defaults():
    plain = start()
    assert (plain.where, plain.node, plain.retry_on_node_loss) == ({}, None, False)
    p = start(where={"gpu": "1", "os": "debian-12.x_64"}, node="build-a.lan", retry_on_node_loss=True)
    assert p.where == {"gpu": "1", "os": "debian-12.x_64"}
    assert (p.node, p.retry_on_node_loss) == ("build-a.lan", True)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            {"a b": "1"},
            "Expected a label: 1 to 63 letters, digits, '_', '.' or '-' - at a key of `$.params.where`",
        ),
        ({"": "1"}, "- at a key of `$.params.where`"),
        (
            {"gpu": "x/y"},
            "Expected a label: 1 to 63 letters, digits, '_', '.' or '-' - at `$.params.where[...]`",
        ),
        ({"gpu": "v" * 64}, "- at `$.params.where[...]`"),
        ({"gpu": 1}, "Expected `str`, got `int` - at `$.params.where[...]`"),
        ({f"k{i}": "v" for i in range(33)}, "Expected `object` of length <= 32 - at `$.params.where`"),
        (["gpu=1"], "Expected `object`, got `array` - at `$.params.where`"),
    ],
)
def test_a_bad_where_is_refused_naming_where_it_is(where, message):
    assert message in refused("job.start", {"command": "true", "where": where})


def test_a_bad_node_name_is_refused_in_words_with_the_value():
    text = refused("job.start", {"command": "true", "node": "-x"})
    assert text == (
        "Expected a node name: a letter or digit, then up to 63 letters, digits, '_', '.' or '-', "
        'got "-x" - at `$.params.node`'
    )
    assert "at `$.params.name`" in refused("node.drain", {"name": "a b"})
    assert "missing required field `name`" in refused("node.cordon", {})


def test_list_and_history_take_a_node_filter():
    listed = decode_params("job.list", msgspec.Raw(b'{"node":"b"}'))
    assert isinstance(listed, ListParams) and listed.node == "b"
    hist = decode_params("history.list", msgspec.Raw(b'{"node":"b","limit":3}'))
    assert isinstance(hist, HistoryParams) and hist.node == "b"
    node = decode_params("node.uncordon", msgspec.Raw(b'{"name":"b"}'))
    assert node == NodeRef("b")


def test_node_info_always_says_its_state_and_round_trips():
    info = NodeInfo(name="a", slots=4)
    wire = msgspec.json.decode(encode(NodeList(nodes=[info])))
    assert wire == {
        "nodes": [
            {
                "name": "a",
                "labels": {},
                "slots": 4,
                "used": 0,
                "load": 0.0,
                "version": "",
                "heartbeat": 0.0,
                "state": "up",
                "incarnation": 0,
            }
        ]
    }
    lost = msgspec.json.decode(b'{"name":"b","state":"lost","incarnation":3}', type=NodeInfo)
    assert (lost.state, lost.incarnation) == ("lost", 3)
    with pytest.raises(msgspec.ValidationError, match="state"):
        msgspec.json.decode(b'{"name":"b","state":"gone"}', type=NodeInfo)


def test_a_request_leaves_out_what_it_does_not_set_so_older_daemons_take_it() -> None:
    # A daemon refuses fields it does not know: a client must not send the fleet's (or any
    # newer) fields at their defaults.
    sent = msgspec.json.decode(msgspec.json.encode(StartParams(command="true", subscribe=True)))
    assert sent == {"command": "true", "subscribe": True}
    assert msgspec.json.decode(msgspec.json.encode(ListParams(state=JobState.RUNNING))) == {"state": "running"}
