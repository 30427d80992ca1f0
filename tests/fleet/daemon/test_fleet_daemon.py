"""Two real daemons, A and B, on one password-protected redis-server with ``fleet = true``.

Each has its own state and runtime directories and ports (no network
namespaces: tests/fleet/test_fleet.py drives those); the tests talk to each
over its Unix socket as ccxctl and the client library do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from ccxd.fleet import keys as fleet_keys
from ccxd.protocol import JobFinished, OutputChunk
from tests.conftest import free_port
from tests.fleet.harness import Fleet, wait_until
from tests.helpers import RawConnection

pytestmark = pytest.mark.redis

LABELS = {"A": {"zone": "a"}, "B": {"zone": "b", "gpu": "1"}}


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        yield f


def finished(node: Any, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job's record, as ``job.get`` on ``node`` gives it, once it says finished."""

    def done() -> dict[str, Any] | None:
        info: dict[str, Any] = node.call("job.get", {"job_id": job_id})
        return info if info["state"] == "finished" else None

    return wait_until(done, timeout, f"job {job_id} finished")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_both_nodes_are_listed_up_with_their_labels_and_status_names_the_fleet(fleet: Fleet) -> None:
    nodes = {n["name"]: n for n in fleet["B"].call("node.list")["nodes"]}
    assert {n: i["state"] for n, i in nodes.items()} == {"A": "up", "B": "up"}
    assert nodes["B"]["labels"] == {"zone": "b", "gpu": "1"} and nodes["A"]["slots"] == 4
    # Each node refreshes what it knows of the others with its heartbeat (every lease / 5).
    line = wait_until(
        lambda: (lambda s: s if "nodes: 2 up" in s else None)(fleet["A"].call("daemon.status")["fleet"]),
        5,
        "A's status counts both nodes",
    )
    assert line == "node A up, 0/4 slots used, nodes: 2 up, 0 lost"


def test_a_job_submitted_on_a_pinned_to_b_runs_on_b_and_a_reads_its_output(fleet: Fleet) -> None:
    queued = fleet["A"].call("job.start", {"command": "echo ran on $CCXD_JOB_ID; exit 3", "node": "B"})
    assert queued["state"] == "queued" and queued.get("node", "") == ""
    info = finished(fleet["A"], queued["id"])
    assert info["node"] == "B" and info["exit_code"] == 3
    # B ran it: it is B's job in memory, not A's; job.list on either node shows it as B's.
    assert fleet["B"].call("job.list", {"node": "B"})["jobs"][0]["id"] == queued["id"]
    listed = {j["id"]: j["node"] for j in fleet["A"].call("job.list", {"limit": 1000})["jobs"]}
    assert listed[queued["id"]] == "B"
    assert queued["id"] not in {j["id"] for j in fleet["A"].call("job.list", {"node": "A"})["jobs"]}
    assert fleet["A"].call("job.list", {"node": "B", "limit": 1})["jobs"][0]["id"] == queued["id"]
    read = fleet["A"].call("job.read", {"job_id": queued["id"]})
    assert "".join(c["data"] for c in read["chunks"]) == f"ran on {queued['id']}\n" and read["eof"]


async def _follow(node: Any, job_id: str, offset: int) -> tuple[bytes, list[int], dict[str, Any] | None]:
    """Every output byte of ``job_id`` from ``offset`` as followed through ``node``, the offsets, the end."""
    got = b""
    offsets = []
    end = None
    async with await node.client() as client:
        async for event in client.follow(job_id, offset):
            if isinstance(event, OutputChunk):
                offsets.append(event.offset)
                assert event.offset == offset + len(got), "a byte missed or repeated"
                got += event.raw()
            elif isinstance(event, JobFinished):
                end = {
                    "state": event.job.state,
                    "node": event.job.node,
                    "output_bytes": event.job.output_bytes,
                }
    return got, offsets, end


def test_a_follows_a_streaming_job_on_b_from_offset_0_and_from_the_middle(fleet: Fleet) -> None:
    lines = 40
    # Each line is 6 bytes ("NNNNN\n"); the job writes them over about two seconds.
    cmd = f"for i in $(seq 10001 {10000 + lines}); do echo $i; sleep 0.05; done"
    queued = fleet["A"].call("job.start", {"command": cmd, "node": "B"})
    job_id = queued["id"]

    def some_output() -> bool:
        return int(fleet["A"].call("job.get", {"job_id": job_id}).get("output_bytes", 0)) >= 60

    wait_until(some_output, 20, "the job on B has written ten lines")

    async def both() -> list[tuple[bytes, list[int], dict[str, Any] | None]]:
        return list(await asyncio.gather(_follow(fleet["A"], job_id, 0), _follow(fleet["A"], job_id, 33)))

    (whole, _, end), (middle, offsets, end2) = asyncio.run(both())
    want = "".join(f"{i}\n" for i in range(10001, 10001 + lines)).encode()
    assert whole == want
    assert middle == want[33:] and offsets[0] == 33
    assert end == end2 == {"state": "finished", "node": "B", "output_bytes": len(want)}


def test_cancel_from_a_kills_the_whole_tree_of_a_job_on_b(fleet: Fleet, tmp_path: Any) -> None:
    pidfile = tmp_path / "child.pid"
    # A grandchild in its own session, as a daemon would fork: the whole tree must go.
    cmd = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 600' & echo started; wait"
    queued = fleet["A"].call("job.start", {"command": cmd, "node": "B"})
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the grandchild wrote its pid")
    child = int(pidfile.read_text())
    assert alive(child)
    cancelled = fleet["A"].call("job.cancel", {"job_id": queued["id"]})
    assert cancelled["node"] == "B"
    info = finished(fleet["A"], queued["id"])
    assert info["reason"] == "cancelled"
    wait_until(lambda: not alive(child), 10, f"the grandchild {child} is gone")


def test_where_places_a_job_on_the_node_whose_labels_match(fleet: Fleet) -> None:
    on_b = fleet["A"].call("job.start", {"command": "true", "where": {"gpu": "1"}})
    on_a = fleet["B"].call("job.start", {"command": "true", "where": {"zone": "a"}})
    assert finished(fleet["A"], on_b["id"])["node"] == "B"
    assert finished(fleet["B"], on_a["id"])["node"] == "A"


def test_a_queued_job_cancelled_before_any_node_claims_it_never_runs(fleet: Fleet, tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    fleet["A"].call("node.cordon", {"name": "B"})
    try:
        wait_until(lambda: fleet.node_states("B")["B"] == "cordoned", 10, "B cordoned")
        queued = fleet["A"].call("job.start", {"command": f"touch {marker}", "node": "B"})
        assert fleet["A"].call("job.get", {"job_id": queued["id"]})["state"] == "queued"
        cancelled = fleet["A"].call("job.cancel", {"job_id": queued["id"]})
        assert cancelled["state"] == "finished" and cancelled["reason"] == "cancelled"
        assert fleet["B"].call("job.get", {"job_id": queued["id"]})["reason"] == "cancelled"
    finally:
        fleet["A"].call("node.uncordon", {"name": "B"})
    # B takes jobs again (a later job pinned to it runs) and the cancelled one never ran.
    later = fleet["A"].call("job.start", {"command": "true", "node": "B"})
    assert finished(fleet["A"], later["id"])["node"] == "B"
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["node.drain", "node.cordon"])
def test_a_drained_or_cordoned_node_claims_nothing_until_uncordoned(fleet: Fleet, verb: str) -> None:
    running = fleet["B"].call("job.start", {"command": "sleep 0.5; echo still ran", "node": "A"})["id"]
    wait_until(lambda: fleet["B"].call("job.get", {"job_id": running})["state"] == "running", 20, "running")
    fleet["B"].call(verb, {"name": "A"})
    try:
        state = "draining" if verb == "node.drain" else "cordoned"
        wait_until(lambda: fleet.node_states("A")["A"] == state, 10, f"A {state}")
        # What A runs goes on to its end.
        ended = finished(fleet["B"], running)
        assert (ended["reason"], ended["exit_code"], ended["node"]) == ("exited", 0, "A")
        jobs = [
            fleet["B"].call("job.start", {"command": "true", "where": {"zone": "a"}})["id"] for _ in range(3)
        ]
        # B does not match them and A claims none: they stay queued.
        wait_until(
            lambda: all(fleet["B"].call("job.get", {"job_id": j})["state"] == "queued" for j in jobs),
            5,
            "the jobs wait",
        )
        assert fleet.node_infos("B")["A"]["state"] == state
        on_a = {j["id"] for j in fleet["A"].call("job.list", {"node": "A"})["jobs"]}
        assert not on_a & set(jobs)
    finally:
        fleet["B"].call("node.uncordon", {"name": "A"})
    for job_id in jobs:
        assert finished(fleet["B"], job_id)["node"] == "A"


def test_outside_a_fleet_a_node_or_where_this_daemon_does_not_match_is_refused(daemon_factory: Any) -> None:
    d = daemon_factory({"CCXD_NODE_NAME": "solo", "CCXD_NODE_LABELS": "zone=x"})
    conn = RawConnection(d.socket)
    try:
        other = conn.call("job.start", {"command": "true", "node": "elsewhere"})
        assert other["error"]["code"] == -32602 and "'elsewhere'" in other["error"]["message"]
        label = conn.call("job.start", {"command": "true", "where": {"zone": "y"}}, req_id=2)
        assert label["error"]["code"] == -32602 and "zone" in label["error"]["message"]
        ok = conn.call("job.start", {"command": "true", "node": "solo", "where": {"zone": "x"}}, req_id=3)
        assert ok["result"]["node"] == "solo"
    finally:
        conn.close()


def test_a_killed_node_is_lost_within_its_lease_and_its_rerunnable_job_runs_on_the_other() -> None:
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        plain = f["A"].call("job.start", {"command": "sleep 600", "node": "B"})
        # A takes nothing while cordoned, so B claims the re-runnable job, which may run anywhere.
        f["A"].call("node.cordon", {"name": "A"})
        again = f["A"].call(
            "job.start", {"command": "echo run $CCXD_JOB_ID; sleep 600", "retry_on_node_loss": True}
        )
        for job_id in (plain["id"], again["id"]):
            wait_until(
                lambda j=job_id: f["A"].call("job.get", {"job_id": j})["state"] == "running",
                20,
                f"{job_id} runs",
            )
        assert f["A"].call("job.get", {"job_id": again["id"]})["node"] == "B"
        f["A"].call("node.uncordon", {"name": "A"})
        f.kill9("B", everything=True)
        f.wait_states({"B": "lost"}, 3.0 + 5)
        lost = finished(f["A"], plain["id"], timeout=5)
        assert lost["reason"] == "lost" and lost["node"] == "B"
        first = finished(f["A"], again["id"], timeout=5)
        assert first["reason"] == "lost"

        def rerun() -> dict[str, Any] | None:
            info: dict[str, Any] = f["A"].call("job.get", {"job_id": again["id"]})
            return info if info.get("retried_by") else None

        new_id = wait_until(rerun, 10, "the lost job is run again")["retried_by"]
        info = f["A"].call("job.get", {"job_id": new_id})
        assert info["node"] == "A" and info["retry_of"] == again["id"]
        wait_until(lambda: f["A"].call("job.read", {"job_id": new_id})["chunks"], 10, "the re-run writes")
        assert f["A"].call("job.read", {"job_id": new_id})["chunks"][0]["data"] == f"run {new_id}\n"
        # The job without re-run stays lost: nothing runs it again.
        assert "retried_by" not in f["A"].call("job.get", {"job_id": plain["id"]})


def test_start_with_subscribe_on_a_streams_a_job_that_runs_on_b(fleet: Fleet) -> None:
    async def run() -> tuple[bytes, Any]:
        out = b""
        end = None
        async with await fleet["A"].client() as client:
            async for event in client.run("echo one; sleep 0.2; echo two >&2; exit 4", node="B"):
                if isinstance(event, OutputChunk):
                    out += event.raw()
                elif isinstance(event, JobFinished):
                    end = event.job
            waited = await client.wait(end.id) if end is not None else None
        assert waited is not None and waited.exit_code == 4
        return out, end

    out, end = asyncio.run(run())
    assert out == b"one\ntwo\n"
    assert end is not None and end.node == "B" and end.exit_code == 4 and end.stderr_bytes == 4


def test_pause_resume_and_signal_from_a_reach_a_job_on_b(fleet: Fleet) -> None:
    cmd = "trap 'echo got usr1; exit 7' USR1; while true; do sleep 0.05; done"
    queued = fleet["A"].call("job.start", {"command": cmd, "node": "B", "shell": "bash"})
    job_id = queued["id"]
    wait_until(
        lambda: fleet["A"].call("job.get", {"job_id": job_id})["state"] == "running", 20, "running on B"
    )
    assert fleet["A"].call("job.pause", {"job_id": job_id})["state"] == "paused"
    assert fleet["B"].call("job.get", {"job_id": job_id})["state"] == "paused"
    assert fleet["A"].call("job.resume", {"job_id": job_id})["state"] == "running"
    fleet["A"].call("job.signal", {"job_id": job_id, "signal": "USR1"})
    info = finished(fleet["A"], job_id)
    assert info["exit_code"] == 7
    read = fleet["A"].call("job.read", {"job_id": job_id})
    # The whole job got it (its sleep too): the trap ran.
    assert "got usr1\n" in "".join(c["data"] for c in read["chunks"])
    # A finished job cannot be paused, wherever it ran: the same refusal as on its own node.
    reply = RawConnection(fleet["A"].socket)
    try:
        refused = reply.call("job.pause", {"job_id": job_id})
    finally:
        reply.close()
    assert refused["error"]["code"] == -32003


def test_a_node_that_comes_back_after_being_declared_lost_kills_its_job_and_leaves_the_record_lost(
    tmp_path: Any,
) -> None:
    pidfile = tmp_path / "pid"
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        queued = f["A"].call("job.start", {"command": f"echo $$ > {pidfile}; exec sleep 600", "node": "B"})
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the job runs on B")
        pid = int(pidfile.read_text())
        # B stops answering (as a machine that hangs) while its job runs on.
        os.kill(f["B"].pid, signal.SIGSTOP)
        try:
            f.wait_states({"B": "lost"}, 3.0 + 5)
            lost = finished(f["A"], queued["id"], timeout=5)
            assert lost["reason"] == "lost"
        finally:
            os.kill(f["B"].pid, signal.SIGCONT)
        # Back, B hears it was lost: it kills the job (it is no longer its own) and rejoins.
        wait_until(lambda: not alive(pid), 10, "B killed the job the fleet gave up")
        f.wait_states({"B": "up"}, 10)
        assert "was declared lost" in f["B"].log()
        # What B wrote of the job's end afterwards was refused: the record is the reaper's.
        wait_until(
            lambda: f["B"].call("job.get", {"job_id": queued["id"]}).get("finished_at"),
            10,
            "B settled the job",
        )
        record = f["A"].call("job.get", {"job_id": queued["id"]})
        assert record["reason"] == "lost" and "was lost" in record["error"]
        # And B takes jobs again.
        later = f["A"].call("job.start", {"command": "true", "node": "B"})
        assert finished(f["A"], later["id"])["node"] == "B"


def test_a_subscriber_on_a_gets_the_resource_samples_of_a_job_on_b(fleet: Fleet) -> None:
    queued = fleet["A"].call("job.start", {"command": "while true; do :; done", "node": "B", "timeout": 60})
    job_id = queued["id"]
    wait_until(
        lambda: fleet["A"].call("job.get", {"job_id": job_id})["state"] == "running", 20, "running on B"
    )
    conn = RawConnection(fleet["A"].socket)
    try:
        reply = conn.call("job.subscribe", {"job_id": job_id, "output": False, "stats": True})
        assert reply["result"]["job"]["node"] == "B"
        samples = []
        while len(samples) < 2:
            note = conn.recv()
            if note.get("method") == "job.stats":
                samples.append(note["params"]["usage"])
    finally:
        conn.close()
        fleet["A"].call("job.cancel", {"job_id": job_id})
    # Live samples from B (the record alone would not change while the job runs): CPU time grows.
    assert 0 < samples[0]["cpu_seconds"] < samples[1]["cpu_seconds"]


def test_a_node_restarted_within_its_lease_adopts_its_fleet_job_and_settles_it(tmp_path: Any) -> None:
    with Fleet(netns=False, names=("A", "B"), lease=5.0, slots=4, labels=LABELS) as f:
        go = tmp_path / "go"
        cmd = f"echo before; while [ ! -e {go} ]; do sleep 0.05; done; echo after"
        queued = f["A"].call("job.start", {"command": cmd, "node": "B"})
        job_id = queued["id"]
        wait_until(lambda: f["A"].call("job.read", {"job_id": job_id})["chunks"], 20, "the job on B wrote")
        f.kill9("B")  # the daemon only: the job runs on under its shim
        f.restart("B")
        go.touch()
        info = finished(f["A"], job_id)
        assert info["reason"] == "exited" and info["exit_code"] == 0 and info["node"] == "B"
        read = f["A"].call("job.read", {"job_id": job_id})
        assert "".join(c["data"] for c in read["chunks"]) == "before\nafter\n"
        # B was never lost, and the restarted B settled the claim of the job it adopted.
        assert f.node_states("A")["B"] == "up"
        assert f.redis is not None
        with f.redis.client() as r:
            wait_until(lambda: r.hget(fleet_keys.job(job_id), "state") == b"done", 5, "the claim settled")
            assert r.smembers(fleet_keys.running("B")) == set()
        assert f"{job_id} adopted" in f["B"].log()


def test_a_job_pinned_to_a_node_the_fleet_does_not_know_is_refused(fleet: Fleet) -> None:
    conn = RawConnection(fleet["A"].socket)
    try:
        reply = conn.call("job.start", {"command": "true", "node": "Z"})
    finally:
        conn.close()
    assert reply["error"]["code"] == -32012 and "'Z'" in reply["error"]["message"]


def test_a_node_restarted_after_it_was_declared_lost_kills_the_jobs_it_would_adopt(tmp_path: Any) -> None:
    pidfile = tmp_path / "pid"
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        queued = f["A"].call("job.start", {"command": f"echo $$ > {pidfile}; exec sleep 600", "node": "B"})
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the job runs on B")
        pid = int(pidfile.read_text())
        f.kill9("B")  # the daemon only: its job runs on under its shim
        f.wait_states({"B": "lost"}, 3.0 + 5)
        lost = finished(f["A"], queued["id"], timeout=5)
        assert lost["reason"] == "lost" and alive(pid)
        f.restart("B")
        # The restarted B would adopt the job, but the fleet gave it up: B kills it instead.
        wait_until(lambda: not alive(pid), 10, "B killed the job it found")
        f.wait_states({"B": "up"}, 10)
        wait_until(lambda: "adopted fleet job(s) the fleet gave up" in f["B"].log(), 10, "B says so")
        record = f["A"].call("job.get", {"job_id": queued["id"]})
        assert (record["reason"], record["finished_at"]) == ("lost", lost["finished_at"])


def test_a_websocket_client_of_a_follows_a_job_on_b_in_binary_frames(fleet: Fleet) -> None:
    from ccxd.client import connect

    want = "".join(f"line {i}\n" for i in range(2000)).encode()
    queued = fleet["A"].call(
        "job.start", {"command": "for i in {0..1999}; do echo line $i; done; sleep 0.3", "node": "B"}
    )
    daemon = fleet["A"].daemon

    async def follow() -> tuple[bytes, Any]:
        got = b""
        end = None
        client = await connect(daemon.ws_url, token=daemon.token, reconnect=False, binary=True)
        try:
            async for event in client.follow(queued["id"], 100):
                if isinstance(event, OutputChunk):
                    assert event.offset == 100 + len(got)
                    got += event.raw()
                elif isinstance(event, JobFinished):
                    end = event.job
        finally:
            await client.close()
        return got, end

    got, end = asyncio.run(follow())
    assert got == want[100:]
    assert end is not None and end.node == "B" and end.output_bytes == len(want)


def test_a_usage_limit_published_to_the_fleet_holds_claude_jobs_on_every_node(fleet: Fleet) -> None:
    import time

    from ccxd.fleet.claude_block import ClaudeBlock, publish_block
    from ccxd.store.connect import open_redis

    key = fleet.key_file.read_bytes().strip()

    async def publish() -> None:
        redis = open_redis(fleet.redis_url)
        try:
            await publish_block(redis, key, ClaudeBlock(time.time() + 60, "usage limit", "Z"))
        finally:
            await redis.aclose()

    asyncio.run(publish())
    try:
        job = fleet["A"].call("job.start", {"kind": "claude", "prompt": "hello", "node": "B"})

        def held() -> dict[str, Any] | None:
            info: dict[str, Any] = fleet["A"].call("job.get", {"job_id": job["id"]})
            return (
                info
                if info.get("node") == "B" and "hit on node Z" in (info.get("wait_reason") or "")
                else None
            )

        info = wait_until(held, 10, "B holds the Claude job for the fleet's usage limit")
        assert info["state"] == "queued" and info["wait_until"] > time.time() + 30
        # A plain job is not held.
        plain = fleet["A"].call("job.start", {"command": "true", "node": "B"})
        assert finished(fleet["A"], plain["id"])["exit_code"] == 0
    finally:
        fleet["A"].call("job.cancel", {"job_id": job["id"]})
        with fleet.redis.client() as r:  # type: ignore[union-attr]
            r.delete(fleet_keys.CLAUDE_BLOCK)


class _Proxy:
    """A TCP relay to Redis that the test can cut (every connection closed, new ones refused) and heal."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.listen()

    def listen(self) -> None:
        import socket
        import threading

        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        with self.lock:
            self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: Any) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                if listener is not self.listener:  # accepted as the relay was cut: cut it too
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(2)

    def cut(self) -> None:
        assert self.listener is not None
        with self.lock:
            self.listener.close()
            self.listener = None
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(2)
                s.close()
            self.conns.clear()


def _b_through_relay(f: Fleet) -> _Proxy:
    """Node B restarted to reach Redis only through a relay the test can cut."""
    assert f.redis is not None
    proxy = _Proxy((f.redis.host, f.redis.port))
    f["B"].stop()
    f["B"].settings["redis_url"] = f.redis.url.replace(f":{f.redis.port}/", f":{proxy.port}/")
    f["B"].write_config()
    f["B"].start()
    f.wait_states({"B": "up"}, 10)
    return proxy


def test_a_node_cut_off_from_redis_stops_its_rerunnable_job_and_comes_back_clean(tmp_path: Any) -> None:
    pidfile = tmp_path / "pid"
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        proxy = _b_through_relay(f)
        f["A"].call("node.cordon", {"name": "A"})
        cmd = f"echo $$ >> {pidfile}; exec sleep 600"
        job = f["A"].call("job.start", {"command": cmd, "retry_on_node_loss": True})
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "B runs the job")
        first = int(pidfile.read_text().split()[0])
        f["A"].call("node.uncordon", {"name": "A"})
        proxy.cut()
        # B cannot renew its lease: within a lease (and a heartbeat) it stops the job itself,
        # before it learns anything from the fleet.
        wait_until(lambda: not alive(first), 3.0 + 3, "B stopped its re-runnable job while cut off")
        lost = finished(f["A"], job["id"], timeout=5)
        assert lost["reason"] == "lost"
        wait_until(lambda: len(pidfile.read_text().split()) == 2, 10, "the job runs again on A")
        rerun = f["A"].call("job.get", {"job_id": job["id"]})["retried_by"]
        assert f["A"].call("job.get", {"job_id": rerun})["node"] == "A"
        proxy.listen()
        f.wait_states({"B": "up"}, 15)
        assert len(pidfile.read_text().split()) == 2, "no third run"
        record = f["A"].call("job.get", {"job_id": job["id"]})
        assert (record["reason"], record["finished_at"]) == ("lost", lost["finished_at"])
        f["A"].call("job.cancel", {"job_id": rerun})


def test_a_job_that_ends_while_its_node_cannot_reach_redis_is_settled_once_it_can(tmp_path: Any) -> None:
    import redis as redis_sync

    pidfile = tmp_path / "pid"
    with Fleet(netns=False, names=("A", "B"), lease=3.0, slots=4, labels=LABELS) as f:
        proxy = _b_through_relay(f)
        f["A"].call("node.cordon", {"name": "A"})
        job = f["A"].call("job.start", {"command": f"echo $$ > {pidfile}; exec sleep 0.6"})
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "B runs the job")
        pid = int(pidfile.read_text())
        proxy.cut()
        wait_until(lambda: not alive(pid), 5, "the job ends while B is cut off")
        wait_until(lambda: "cannot tell the fleet it ended" in f["B"].log(), 10, "B's first try to fail")
        proxy.listen()  # within the lease: B is not declared lost
        r = redis_sync.Redis.from_url(f.redis.url)
        try:
            state = wait_until(
                lambda: (lambda s: s if s == b"done" else None)(r.hget(fleet_keys.job(job["id"]), "state")),
                15,
                "the fleet hears that the job ended",
            )
            assert state == b"done" and not r.smembers(fleet_keys.running("B"))
        finally:
            r.close()
        assert finished(f["A"], job["id"])["node"] == "B"
        assert f.node_states() == {"A": "cordoned", "B": "up"}
