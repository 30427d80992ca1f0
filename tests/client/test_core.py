"""The client core without I/O (ccxd/client/core.py): what both the async and the blocking client rely on."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec

from ccxd.client.core import Answer, ClientCore, Delivery, Refused
from ccxd.client.errors import ClientError, RemoteError
from ccxd.protocol import JobFinished, JobInfo, OutputChunk, PingResult, SubscribeParams, SubscribeResult


def line(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def output(job_id: str, offset: int, text: str) -> bytes:
    chunk = OutputChunk(job_id=job_id, stream="stdout", seq=0, offset=offset, data=text)
    return line({"jsonrpc": "2.0", "method": "job.output", "params": chunk})


def test_a_reply_is_matched_to_its_request_and_decoded_to_the_methods_result() -> None:
    core = ClientCore()
    first, data = core.request("daemon.ping")
    second, _ = core.request("daemon.ping")
    assert json.loads(data) == {"jsonrpc": "2.0", "method": "daemon.ping", "params": {}, "id": first}
    answer = core.receive(line({"jsonrpc": "2.0", "id": second, "result": {"pong": True, "time": 1.5}}))
    assert answer == Answer(second, PingResult(pong=True, time=1.5), None, False)
    assert core.receive(line({"jsonrpc": "2.0", "id": second, "result": {}})) is None  # answered once only
    err = core.receive(line({"jsonrpc": "2.0", "id": first, "error": {"code": -32602, "message": "no"}}))
    assert isinstance(err, Answer) and isinstance(err.error, RemoteError) and err.error.code == -32602


def test_a_reply_of_the_wrong_shape_and_a_connection_refusal_are_errors() -> None:
    core = ClientCore()
    req, _ = core.request("daemon.ping")
    bad = core.receive(line({"jsonrpc": "2.0", "id": req, "result": {"pong": "maybe"}}))
    assert isinstance(bad, Answer) and isinstance(bad.error, ClientError)
    assert "unexpected reply" in str(bad.error)
    refused = core.receive(line({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "full"}}))
    assert isinstance(refused, Refused) and refused.error.message == "full"


def test_only_followed_jobs_events_are_delivered_and_output_repeated_after_a_reconnect_is_dropped() -> None:
    core = ClientCore()
    assert core.receive(output("j1", 0, "before")) is None  # nobody follows j1 yet
    core.follow("j1")
    assert core.receive(output("j1", 0, "abc")) == Delivery(
        "j1", OutputChunk(job_id="j1", stream="stdout", seq=0, offset=0, data="abc")
    )
    assert core.receive(output("j1", 0, "abc")) is None  # replayed after a reconnect: seen
    delivered = core.receive(output("j1", 2, "cde"))  # overlaps: delivered, the offset moves on
    assert isinstance(delivered, Delivery) and core.next_offset["j1"] == 5
    done = JobFinished(job=JobInfo(id="j1", state="finished", command="x", exit_code=0))
    finished = core.receive(line({"jsonrpc": "2.0", "method": "job.finished", "params": done}))
    assert isinstance(finished, Delivery) and finished.event == done


def test_a_reconnect_resubscribes_each_followed_job_where_its_output_stopped() -> None:
    core = ClientCore()
    core.follow("j1")
    core.follow("j2")
    core.quiet.add("j2")  # followed for its end only (wait)
    core.receive(output("j1", 0, "12345"))
    core.resubscribing["j3"] = 0  # a follower makes its own subscription
    core.follow("j3")
    assert core.resubscriptions() == [
        SubscribeParams(job_id="j1", from_offset=5, output=True),
        SubscribeParams(job_id="j2", from_offset=0, output=False),
    ]
    assert core.receive(output("j3", 0, "old")) is None  # an earlier subscription's, until the reply
    job = JobInfo(id="j3", state="running", command="x")
    assert core.resubscribed(SubscribeResult(job=job)) == "j3"
    assert isinstance(core.receive(output("j3", 0, "new")), Delivery)


def test_the_blocking_client_and_runs_fast_path_import_neither_asyncio_nor_typer() -> None:
    # Importing either costs more start time than `ccxctl run true` spends on its job.
    code = (
        "import sys, ccxctl.fastpath, ccxctl.runjob, ccxd.client.blocking; "
        "print(sorted(m for m in ('asyncio', 'typer', 'ccxd.client.connection') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
