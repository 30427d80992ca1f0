"""The JSON-RPC core without sockets: every input gets a valid reply."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccxd.protocol import EmptyParams, JobRef, PingResult
from ccxd.rpc.codec import decode_params, parse
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher


class RecordingSink:
    """A transport stand-in for the sans-I/O dispatcher (no sockets here)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, message: bytes) -> None:
        self.written.append(message)

    async def drain(self) -> None:
        return None

    @property
    def closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def make_dispatcher() -> Dispatcher:
    d = Dispatcher()

    async def ping(p: EmptyParams, conn: Connection) -> PingResult:
        return PingResult(pong=True, time=1.0)

    async def get(p: JobRef, conn: Connection) -> PingResult:
        if p.job_id == "boom":
            raise RuntimeError("bug")
        return PingResult(pong=p.job_id == "x", time=2.0)

    d.register("daemon.ping", ping)
    d.register("job.get", get)
    return d


def handle(raw: bytes) -> object:
    d = make_dispatcher()
    out = asyncio.run(d.handle(raw, Connection(RecordingSink(), "test", "test")))
    return None if out is None else json.loads(out)


def is_valid_response(r: object) -> bool:
    if not isinstance(r, dict) or r.get("jsonrpc") != "2.0" or "id" not in r:
        return False
    if ("result" in r) == ("error" in r):
        return False
    if "error" in r:
        e = r["error"]
        return isinstance(e, dict) and isinstance(e.get("code"), int) and isinstance(e.get("message"), str)
    return True


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", -32700),
        (b"not json", -32700),
        (b'{"id": 1, "method": "daemon.ping"}', -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "daemon.ping"}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "daemon.ping"}', -32600),
        (b'{"jsonrpc": "2.0", "id": true, "method": "daemon.ping"}', -32600),
        (b'{"jsonrpc": "2.0", "id": {}, "method": "daemon.ping"}', -32600),
        (b"[]", -32600),
        (b"42", -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "nope"}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "job.get", "params": ["x"]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "job.get", "params": {}}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "job.get", "params": {"job_id": 3}}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "job.get", "params": {"job_id": "boom"}}', -32603),
    ],
)
def test_spec_errors(raw: bytes, code: int) -> None:
    reply = handle(raw)
    assert is_valid_response(reply) and reply["error"]["code"] == code  # type: ignore[index]


def test_invalid_request_keeps_a_usable_id() -> None:
    reply = handle(b'{"jsonrpc": "1.0", "id": 7, "method": "daemon.ping"}')
    assert reply["id"] == 7  # type: ignore[index]


def test_params_errors_carry_msgspecs_path() -> None:
    reply = handle(b'{"jsonrpc": "2.0", "id": 1, "method": "job.get", "params": {"job_id": 3}}')
    assert reply["error"]["message"] == "invalid params: Expected `str`, got `int` - at `$.params.job_id`"  # type: ignore[index]


def test_notifications_get_no_reply_and_batches_keep_order() -> None:
    assert handle(b'{"jsonrpc": "2.0", "method": "daemon.ping"}') is None
    assert handle(b'{"jsonrpc": "2.0", "method": "nope"}') is None
    assert handle(b'[{"jsonrpc": "2.0", "method": "daemon.ping"}]') is None
    batch = handle(
        b'[{"jsonrpc":"2.0","id":"a","method":"daemon.ping"},1,{"jsonrpc":"2.0","id":"b","method":"x"}]'
    )
    assert [r["id"] for r in batch] == ["a", None, "b"]  # type: ignore[union-attr]
    assert [("result" in r) for r in batch] == [True, False, False]  # type: ignore[union-attr]


def test_decode_params_defaults_to_empty_object() -> None:
    assert isinstance(decode_params("daemon.ping", None), EmptyParams)
    assert parse(b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping"}').calls[0].params is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
requestish = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats()),
        "method": st.sampled_from(["daemon.ping", "job.get", "nope", 3]),
        "params": st.one_of(json_values, st.fixed_dictionaries({"job_id": json_values})),
    },
)


def check(reply: object, raw: bytes) -> None:
    if reply is None:
        return  # only notifications (or batches of them) go unanswered
    if isinstance(reply, list):
        assert reply and all(is_valid_response(r) for r in reply)
    else:
        assert is_valid_response(reply), (raw, reply)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_always_get_a_valid_reply(raw: bytes) -> None:
    reply = handle(raw)
    assert reply is not None  # random bytes are never a well-formed notification
    check(reply, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, requestish, st.lists(requestish, max_size=4)))
def test_arbitrary_json_always_gets_a_valid_reply_or_none_for_notifications(value: object) -> None:
    raw = msgspec.json.encode(value)
    check(handle(raw), raw)
