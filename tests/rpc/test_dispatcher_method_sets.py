"""A dispatcher with one more method set (Dispatcher.with_methods), as WebSocket serves cc_executor's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccxd.protocol import ErrorResponse, Ok, PingResult, Response
from ccxd.rpc.codec import Call
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from tests.rpc.test_dispatcher import FakeSink, Recorder


async def legacy_pong(call: Call, conn: Connection) -> Response | ErrorResponse:
    """A legacy method answering the whole call itself."""
    return Response(id=call.id, result=Ok())


def make() -> tuple[Dispatcher, Dispatcher, Connection]:
    native = Dispatcher()
    native.register("daemon.ping", Recorder().ping)
    extended = native.with_methods({"pong": legacy_pong})
    return native, extended, Connection(FakeSink(), peer="ws 127.0.0.1:1", transport="fake")


async def ask(d: Dispatcher, conn: Connection, method: str) -> Any:
    reply = await d.handle(json.dumps({"jsonrpc": "2.0", "id": 7, "method": method}).encode(), conn)
    assert reply is not None
    return json.loads(reply)


async def test_the_extended_dispatcher_serves_both_sets_and_the_native_one_only_its_own() -> None:
    native, extended, conn = make()
    assert (await ask(extended, conn, "pong")) == {"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}
    assert (await ask(extended, conn, "daemon.ping"))["result"]["pong"] is True
    refused = await ask(native, conn, "pong")
    assert refused["error"]["code"] == -32601
    assert extended.methods == ["daemon.ping", "pong"]


async def test_a_native_method_registered_later_is_served_by_both() -> None:
    native, extended, conn = make()

    async def get(params: Any, c: Connection) -> PingResult:
        return PingResult(pong=True, time=1.0)

    native.register("job.get", get)
    reply = await ask(extended, conn, "job.get")
    assert reply["error"]["code"] == -32602  # served: its params were checked (job_id missing)


def test_a_method_set_cannot_take_a_native_name() -> None:
    with pytest.raises(KeyError, match="daemon.ping"):
        Dispatcher().with_methods({"daemon.ping": legacy_pong})
