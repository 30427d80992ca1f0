"""The dispatcher (ccxd.rpc.dispatcher): bytes in, reply bytes out, with a fake sink."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccxd.errors import RpcError
from ccxd.protocol import (
    METHODS,
    EmptyParams,
    ErrorCode,
    JobInfo,
    JobList,
    JobRef,
    JobState,
    ListParams,
    PingResult,
)
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher


class FakeSink:
    """Records what the connection would send."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, message: bytes) -> None:
        self.writes.append(message)

    async def drain(self) -> None:
        return None

    @property
    def closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Recorder:
    """Handlers that remember how they were called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Connection]] = []

    async def ping(self, params: EmptyParams, conn: Connection) -> PingResult:
        self.calls.append(("daemon.ping", params, conn))
        return PingResult(pong=True, time=12.5)

    async def get(self, params: JobRef, conn: Connection) -> JobInfo:
        self.calls.append(("job.get", params, conn))
        if params.job_id == "boom":
            raise ZeroDivisionError("secret internals")
        if params.job_id != "j1":
            raise RpcError.job_not_found(params.job_id)
        conn.send(b'{"note":"sent before the reply"}')
        return JobInfo(id="j1", state=JobState.RUNNING, command="sleep 1")

    async def list_jobs(self, params: ListParams, conn: Connection) -> JobList:
        self.calls.append(("job.list", params, conn))
        return JobList(jobs=[])


def make() -> tuple[Dispatcher, Recorder, Connection, FakeSink]:
    rec = Recorder()
    d = Dispatcher()
    d.register("daemon.ping", rec.ping)
    d.register("job.get", rec.get)
    d.register("job.list", rec.list_jobs)
    sink = FakeSink()
    return d, rec, Connection(sink, peer="uid=1000 pid=1", transport="fake"), sink


async def handle(raw: bytes | str) -> tuple[Any, Recorder, FakeSink]:
    d, rec, conn, sink = make()
    reply = await d.handle(raw.encode() if isinstance(raw, str) else raw, conn)
    return (None if reply is None else json.loads(reply)), rec, sink


# -- registration ------------------------------------------------------------------


def test_only_protocol_methods_can_be_registered() -> None:
    d = Dispatcher()
    with pytest.raises(KeyError, match="job.frobnicate"):
        d.register("job.frobnicate", Recorder().ping)
    d.register("daemon.ping", Recorder().ping)
    d.register("job.get", Recorder().get)
    assert d.methods == ["daemon.ping", "job.get"]


# -- single requests -----------------------------------------------------------------


async def test_a_request_gets_its_result_with_its_id() -> None:
    reply, rec, _ = await handle('{"jsonrpc":"2.0","id":"r-1","method":"daemon.ping"}')
    assert reply == {"jsonrpc": "2.0", "id": "r-1", "result": {"pong": True, "time": 12.5}}
    assert rec.calls[0][1] == EmptyParams()


async def test_the_handler_gets_decoded_params_and_the_connection() -> None:
    d, rec, conn, sink = make()
    raw = await d.handle(b'{"jsonrpc":"2.0","id":2,"method":"job.get","params":{"job_id":"j1"}}', conn)
    assert raw is not None
    reply = json.loads(raw)
    assert reply["id"] == 2
    assert reply["result"]["id"] == "j1" and reply["result"]["state"] == "running"
    method, params, got_conn = rec.calls[0]
    assert (method, params, got_conn) == ("job.get", JobRef("j1"), conn)
    # What a handler sends itself goes straight to the sink; the reply is returned.
    assert sink.writes == [b'{"note":"sent before the reply"}']


async def test_the_reply_is_one_compact_line() -> None:
    d, _, conn, _ = make()
    raw = await d.handle(b'{"jsonrpc":"2.0","id":1,"method":"job.list","params":{"limit":5}}', conn)
    assert raw is not None
    assert b"\n" not in raw
    assert raw == b'{"id":1,"result":{"jobs":[]},"jsonrpc":"2.0"}'


async def test_a_notification_runs_but_gets_no_reply() -> None:
    reply, rec, sink = await handle('{"jsonrpc":"2.0","method":"job.list","params":{"limit":1}}')
    assert reply is None
    assert [c[0] for c in rec.calls] == ["job.list"]
    assert sink.writes == []


@pytest.mark.parametrize(
    "raw",
    [
        '{"jsonrpc":"2.0","method":"job.frobnicate"}',
        '{"jsonrpc":"2.0","method":"job.get","params":{"job_id":5}}',
        '{"jsonrpc":"2.0","method":"job.get","params":{"job_id":"missing"}}',
        '{"jsonrpc":"2.0","method":"job.get","params":{"job_id":"boom"}}',
    ],
)
async def test_a_failing_notification_gets_no_reply_either(raw: str) -> None:
    reply, _, _ = await handle(raw)
    assert reply is None


async def test_unknown_method_is_method_not_found() -> None:
    reply, _, _ = await handle('{"jsonrpc":"2.0","id":9,"method":"job.frobnicate"}')
    assert reply["id"] == 9
    assert reply["error"] == {"code": -32601, "message": "method not found: 'job.frobnicate'"}


async def test_protocol_method_without_handler_is_method_not_found() -> None:
    assert "session.list" in METHODS
    reply, _, _ = await handle('{"jsonrpc":"2.0","id":1,"method":"session.list"}')
    assert reply["error"]["code"] == ErrorCode.METHOD_NOT_FOUND


async def test_invalid_params_never_reach_the_handler() -> None:
    reply, rec, _ = await handle('{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"job_id":5}}')
    assert rec.calls == []
    assert reply["error"] == {
        "code": -32602,
        "message": "invalid params: Expected `str`, got `int` - at `$.params.job_id`",
    }


async def test_params_by_position_are_invalid_params() -> None:
    reply, rec, _ = await handle('{"jsonrpc":"2.0","id":1,"method":"job.get","params":["j1"]}')
    assert rec.calls == []
    assert reply["error"]["code"] == -32602
    assert "by-name" in reply["error"]["message"]


async def test_rpc_error_becomes_its_code_message_and_data() -> None:
    reply, _, _ = await handle('{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"job_id":"nope"}}')
    assert reply == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32001, "message": "no job with id 'nope'", "data": {"job_id": "nope"}},
    }


async def test_handler_crash_is_internal_error_without_leaking_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ccxd.rpc"):
        reply, _, _ = await handle('{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"job_id":"boom"}}')
    assert reply["error"] == {"code": -32603, "message": "internal error in job.get"}
    assert "secret internals" not in json.dumps(reply)
    assert any("job.get" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_parse_error_reply() -> None:
    reply, _, _ = await handle(b'{"jsonrpc":"2.0","id":1,"method":')
    assert reply["id"] is None
    assert reply["error"]["code"] == -32700


@pytest.mark.parametrize("raw", [b'{"id":"\xff","jsonrpc":"2.0","method":"daemon.ping"}', b"[" * 20_000])
async def test_hostile_bytes_still_get_a_reply(raw: bytes) -> None:
    reply, _, _ = await handle(raw)
    assert reply["error"]["code"] == -32700


# -- batches --------------------------------------------------------------------------


async def test_batch_replies_in_order_and_skips_notifications() -> None:
    reply, rec, _ = await handle(
        "["
        '{"jsonrpc":"2.0","id":1,"method":"daemon.ping"},'
        '{"jsonrpc":"2.0","method":"job.list"},'
        '{"jsonrpc":"2.0","id":2,"method":"job.get","params":{"job_id":"nope"}},'
        "7,"
        '{"jsonrpc":"2.0","id":3,"method":"job.frobnicate"}'
        "]"
    )
    assert isinstance(reply, list)
    assert [r["id"] for r in reply] == [1, 2, None, 3]
    assert reply[0]["result"]["pong"] is True
    assert [r.get("error", {}).get("code") for r in reply] == [None, -32001, -32600, -32601]
    assert [c[0] for c in rec.calls] == ["daemon.ping", "job.list", "job.get"]


async def test_batch_of_only_notifications_gets_no_reply() -> None:
    reply, rec, _ = await handle(
        '[{"jsonrpc":"2.0","method":"daemon.ping"},{"jsonrpc":"2.0","method":"job.list"}]'
    )
    assert reply is None
    assert len(rec.calls) == 2


async def test_batch_of_notifications_and_an_invalid_member_replies_with_the_error_only() -> None:
    reply, _, _ = await handle('[{"jsonrpc":"2.0","method":"daemon.ping"},{"method":"daemon.ping"}]')
    assert isinstance(reply, list) and len(reply) == 1
    assert reply[0]["error"]["code"] == -32600


async def test_empty_batch_is_a_single_error_object() -> None:
    reply, _, _ = await handle("[]")
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600


# -- property: whatever arrives, the reply is well-formed JSON-RPC ----------------------


def check_response(obj: Any) -> None:
    """Fail unless ``obj`` is exactly one JSON-RPC 2.0 response object."""
    assert isinstance(obj, dict), obj
    assert obj.get("jsonrpc") == "2.0", obj
    assert "id" in obj, obj
    assert (
        obj["id"] is None
        or isinstance(obj["id"], str)
        or (isinstance(obj["id"], int) and not isinstance(obj["id"], bool))
    ), obj
    assert ("result" in obj) != ("error" in obj), obj
    assert set(obj) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), obj
    if "error" in obj:
        err = obj["error"]
        assert isinstance(err, dict), obj
        assert set(err) <= {"code", "message", "data"}, obj
        assert isinstance(err["code"], int) and not isinstance(err["code"], bool), obj
        assert isinstance(err["message"], str), obj


def check_reply(raw: bytes) -> Any:
    """Fail unless ``raw`` is one response or a non-empty batch of responses; return it decoded."""
    assert b"\n" not in raw
    obj = json.loads(raw.decode("utf-8"))
    if isinstance(obj, list):
        assert obj, "a batch reply is never empty"
        for item in obj:
            check_response(item)
    else:
        check_response(obj)
    return obj


def is_notification(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("jsonrpc") == "2.0"
        and isinstance(obj.get("method"), str)
        and "id" not in obj
    )


def valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def expected_replies(obj: Any) -> list[Any]:
    """The ids of the replies a JSON message must get, in order (empty: no reply at all).

    Every member that is not a notification gets a reply carrying its id when that
    id is a valid one (even when the member is otherwise invalid), else null.
    """
    items = obj if isinstance(obj, list) and obj else [obj]
    return [
        item["id"] if isinstance(item, dict) and "id" in item and valid_id(item["id"]) else None
        for item in items
        if not is_notification(item)
    ]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
method_names = st.sampled_from([*METHODS, "job.frobnicate", ""]) | st.text(max_size=12)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | json_values,
        "method": method_names | json_values,
        "id": json_values,
        "params": json_values
        | st.fixed_dictionaries({}, optional={"job_id": json_values, "limit": json_values}),
    },
)
messages = request_like | st.lists(request_like | json_values, max_size=5) | json_values

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(messages)
async def test_any_json_message_gets_a_well_formed_reply_or_none_only_for_notifications(message: Any) -> None:
    raw = json.dumps(message, ensure_ascii=False).encode("utf-8")
    d, _, conn, _ = make()
    reply = await d.handle(raw, conn)
    ids = expected_replies(message)
    if not ids:
        assert reply is None
        return
    assert reply is not None
    obj = check_reply(reply)
    if isinstance(message, list) and message:
        assert isinstance(obj, list)
        assert [r["id"] for r in obj] == ids
    else:
        assert isinstance(obj, dict)
        assert obj["id"] == ids[0]


def mutate(message: Any, data: st.DataObject) -> bytes:
    """The UTF-8 JSON of ``message`` cut short, or with one byte replaced or inserted."""
    raw = bytearray(json.dumps(message, ensure_ascii=False).encode("utf-8"))
    at = data.draw(st.integers(0, len(raw)))
    how = data.draw(st.sampled_from(["cut", "replace", "insert"]))
    byte = data.draw(st.integers(0, 255))
    if how == "cut":
        return bytes(raw[:at])
    if how == "replace" and at < len(raw):
        raw[at] = byte
    else:
        raw.insert(at, byte)
    return bytes(raw)


mangled = st.builds(mutate, messages, st.data())


@PROPERTY
@given(st.binary(max_size=300) | mangled)
async def test_any_bytes_get_a_well_formed_reply_or_none_only_for_notifications(raw: bytes) -> None:
    d, _, conn, _ = make()
    reply = await d.handle(raw, conn)
    if reply is None:
        message = json.loads(raw)
        if isinstance(message, list):
            assert message and all(is_notification(m) for m in message)
        else:
            assert is_notification(message)
    else:
        check_reply(reply)
