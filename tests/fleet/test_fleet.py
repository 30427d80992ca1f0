"""A fleet of three ccxd nodes on one Redis, each node in its own network namespace (issue 23).

One fleet serves the whole module (tests/fleet/conftest.py); tests that kill,
partition or cordon a node put it back before the next test.  Jobs prove where
they ran by printing ``/proc/self/ns/net``: each node's namespace is a
different one.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

import ccxd
from ccxd.fleet import keys as fleet_keys
from ccxd.protocol import JobFinished, JobInfo, OutputChunk
from tests.fleet.conftest import LEASE, SLOTS, ensure_whole
from tests.fleet.harness import NAMES, Fleet, wait_until
from tests.helpers import job_pids

pytestmark = [pytest.mark.root, pytest.mark.redis]

T = TypeVar("T")

LOST_WITHIN = LEASE + 5.0
"""A dead or cut-off node's jobs are ``lost`` within its lease and a few seconds."""


@pytest.fixture
def whole(fleet: Fleet) -> Iterator[Fleet]:
    """The shared fleet, made whole again after a test that broke it (even when the test failed)."""
    yield fleet
    ensure_whole(fleet)


async def poll(fn: Callable[[], Awaitable[T] | T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Await ``fn`` (sync or async) until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def finished(client: Any, job_id: str, timeout: float = 30) -> JobInfo:
    """The job's record once it is finished, asked of ``client``'s node."""

    async def check() -> JobInfo | None:
        info: JobInfo = await client.get(job_id)
        return info if info.state == "finished" else None

    return await poll(check, timeout, f"job {job_id} finished")


async def running(client: Any, job_id: str, timeout: float = 20) -> JobInfo:
    """The job's record once it runs (a pid on some node)."""

    async def check() -> JobInfo | None:
        info: JobInfo = await client.get(job_id)
        return info if info.state == "running" and info.node else None

    return await poll(check, timeout, f"job {job_id} running")


async def read_all(client: Any, job_id: str) -> bytes:
    """Every byte of the job's output stored so far (``job.read`` page by page)."""
    out = bytearray()
    while True:
        page = await client.read(job_id, len(out), 1 << 20)
        for chunk in page.chunks:
            out += chunk.raw()
        if page.eof or not page.chunks:
            return bytes(out)


def netns_of(fleet: Fleet, name: str) -> str:
    """What ``readlink /proc/self/ns/net`` prints in node ``name``'s namespace."""
    return f"net:[{fleet.netns_inode(name)}]"


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def proc_state(pid: int) -> str:
    """The one-letter state of ``pid`` (``T`` stopped, ``S`` sleeping …); ``X`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def max_overlap(records: list[JobInfo]) -> int:
    """Most of ``records`` that ran at the same time (from their start and finish times)."""
    edges = sorted(
        [(r.started_at or 0.0, 1) for r in records] + [(r.finished_at or 0.0, -1) for r in records],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


# -- the registry -----------------------------------------------------------------


def test_every_node_is_listed_up_with_its_labels_slots_and_version(fleet: Fleet) -> None:
    infos = fleet.node_infos(via="B")
    assert set(infos) == set(NAMES)
    for name in NAMES:
        info = infos[name]
        assert info["state"] == "up", info
        assert info["labels"] == fleet.labels[name]
        assert info["slots"] == SLOTS
        assert info["version"] == ccxd.__version__
        assert abs(time.time() - info["heartbeat"]) < LEASE, "heartbeats are renewed every lease / 5"
    out = fleet["C"].ctl("nodes").stdout
    for name in NAMES:
        [row] = [line for line in out.splitlines() if line.split()[:1] == [name]]
        assert "up" in row.split(), row
        assert f"zone={name.lower()}" in row, row


# -- submit anywhere, run somewhere ---------------------------------------------------


async def test_300_jobs_submitted_on_one_node_run_once_each_on_all_three(fleet: Fleet) -> None:
    ran = fleet.root / f"ran-{secrets.token_hex(4)}"
    # Every run appends its id and its network namespace; 0.2 s each, so no one node's
    # slots could take them all.
    command = f"print -r -- $CCXD_JOB_ID $(readlink /proc/self/ns/net) >> {ran}; sleep 0.2"
    kinds = ["any"] * 240 + ["gpu"] * 30 + ["pinned"] * 30
    kinds = [kinds[i] for i in sorted(range(300), key=lambda i: (i % 10, i))]  # interleaved
    options: dict[str, dict[str, Any]] = {"any": {}, "gpu": {"where": {"gpu": "1"}}, "pinned": {"node": "B"}}
    async with await fleet["A"].client() as a:
        submitted = await asyncio.gather(*(a.start(command, **options[k]) for k in kinds))
        ids = [job.id for job in submitted]
        assert len(set(ids)) == 300
        assert all(job.state in ("queued", "running", "finished") for job in submitted)
        await poll(lambda: len(lines_of(ran)) >= 300, 90, "300 runs")
        records = {job_id: await finished(a, job_id) for job_id in ids}
    runs = collections.Counter(line.split()[0] for line in lines_of(ran))
    assert set(runs) == set(ids), "no job lost, none invented"
    assert max(runs.values()) == 1, f"jobs run twice: {[k for k, v in runs.items() if v > 1]}"
    where_ran = dict(line.split() for line in lines_of(ran))
    for job_id, record in records.items():
        assert record.exit_code == 0, record
        assert record.node in NAMES
        assert where_ran[job_id] == netns_of(fleet, record.node), "the record names the node it ran on"
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for kind, job_id in zip(kinds, ids, strict=True):
        by_kind[kind][records[job_id].node] += 1
    assert by_kind["gpu"] == {"C": 30}, "--where gpu=1: only C has the label"
    assert by_kind["pinned"] == {"B": 30}, "--node B"
    assert set(by_kind["any"]) == set(NAMES), f"every node took some: {by_kind['any']}"
    for name in NAMES:
        mine = [r for r in records.values() if r.node == name]
        assert max_overlap(mine) <= SLOTS, f"{name} ran more than node_slots at once"


async def test_a_node_with_a_free_slot_starts_the_fleets_high_priority_jobs_before_low_ones(
    whole: Fleet,
) -> None:
    fleet = whole
    for name in ("A", "B"):  # C alone takes work: no other reader hands the entries round
        fleet[name].stop()
    async with await fleet["C"].client() as c:
        blockers = [await c.start("sleep 600") for _ in range(SLOTS)]
        for job in blockers:
            await running(c, job.id)
        # C is full: these wait in the fleet's queues, the low ones queued first.
        low = [await c.start("true", priority="low") for _ in range(SLOTS)]
        high = [await c.start("sleep 600", priority="high") for _ in range(SLOTS)]
        for job in blockers:
            await c.cancel(job.id)
        # Every slot the blockers freed went to a high job: they all run, and no low job has
        # started (the highs hold every slot), whatever order the slots freed in.
        for job in high:
            await running(c, job.id)
        waiting = [await c.get(j.id) for j in low]
        assert {w.state for w in waiting} == {"queued"}, "a low job started before the high ones"
        for job in high:
            await c.cancel(job.id)
        records = {j.id: await finished(c, j.id) for j in low}
    assert {r.node for r in records.values()} == {"C"}
    assert {r.exit_code for r in records.values()} == {0}


def test_ccxctl_run_where_and_node_choose_the_node_and_stream_its_output(fleet: Fleet) -> None:
    on_gpu = fleet["A"].ctl("run", "--where", "gpu=1", "readlink /proc/self/ns/net")
    assert on_gpu.stdout.strip() == netns_of(fleet, "C")
    pinned = fleet["A"].ctl("run", "--node", "B", "readlink /proc/self/ns/net; exit 3", check=False)
    assert pinned.stdout.strip() == netns_of(fleet, "B")
    assert pinned.returncode == 3, "ccxctl run exits with the remote job's code"
    both = fleet["C"].ctl("run", "-d", "--where", "zone=a", "--where", "gpu=1", "true", check=False)
    job_id = both.stdout.strip()
    assert both.returncode == 0 and job_id, both.stderr
    # No node has zone=a and gpu=1: every node passes it, and it waits parked, queued.
    assert fleet.redis is not None
    with fleet.redis.client() as r:
        wait_until(lambda: r.zscore(fleet_keys.PARKED, job_id) is not None, 10, "the job parked")
    record = fleet["B"].call("job.get", {"job_id": job_id})
    assert record["state"] == "queued" and record.get("node", "") == ""
    fleet["B"].ctl("cancel", job_id)
    record = fleet["A"].call("job.get", {"job_id": job_id})
    assert (record["state"], record["reason"]) == ("finished", "cancelled")


# -- any node serves any job ------------------------------------------------------------

STREAMER = "for i in {0..19}; do seq $((i*2000+1)) $((i*2000+2000)); sleep 0.05; done"
STREAMED = b"".join(b"%d\n" % i for i in range(1, 40001))


async def test_attach_from_c_to_a_job_on_b_gets_every_byte_and_resumes_on_a(fleet: Fleet) -> None:
    async with await fleet["A"].client() as a:
        job = await a.start(STREAMER, node="B")
        got = bytearray()
        async with await fleet["C"].client() as c:
            async for ev in c.follow(job.id):
                if isinstance(ev, OutputChunk):
                    assert ev.offset == len(got), "no byte lost or repeated"
                    got += ev.raw()
                    if len(got) > 50_000:
                        break  # C's client goes away mid-stream; the job runs on
        resume_at = len(got)
        final = None
        async for ev in a.follow(job.id, from_offset=resume_at):
            if isinstance(ev, OutputChunk):
                assert ev.offset == len(got), "resumed on another node at the byte it stopped"
                got += ev.raw()
            elif isinstance(ev, JobFinished):
                final = ev.job
        assert bytes(got) == STREAMED
        assert final is not None and final.node == "B" and final.exit_code == 0
        assert final.stdout_bytes == len(STREAMED)
        # Replay of a finished remote job from a middle offset.
        mid = 123_457
        tail = bytearray()
        async with await fleet["C"].client() as c:
            async for ev in c.follow(job.id, from_offset=mid):
                if isinstance(ev, OutputChunk):
                    assert ev.offset == mid + len(tail)
                    tail += ev.raw()
        assert bytes(tail) == STREAMED[mid:]
    logs = fleet["C"].ctl("logs", job.id)
    assert logs.stdout.encode() == STREAMED


TREE = "sleep 1000 & zsh -c 'sleep 1001 & wait' & wait"
"""A job whose grandchild (sleep 1001) is not in the shell's own job table."""


async def test_cancel_from_a_kills_the_whole_tree_of_a_job_on_c(fleet: Fleet) -> None:
    async with await fleet["B"].client() as b, await fleet["A"].client() as a:
        job = await b.start(TREE, node="C")
        await poll(lambda: len(job_pids(job.id)) >= 4, 20, "the job's tree (shell, sleep, zsh, sleep)")
        [grandchild] = [p for p in job_pids(job.id) if psutil.Process(p).cmdline() == ["sleep", "1001"]]
        await a.cancel(job.id)
        record = await finished(a, job.id, timeout=15)
        assert record.reason == "cancelled" and record.node == "C"
        await poll(lambda: not job_pids(job.id), 15, "every process of the job gone")
        assert proc_state(grandchild) in ("X", "Z")


async def test_pause_resume_and_signal_from_a_reach_a_job_on_c(fleet: Fleet) -> None:
    async with await fleet["A"].client() as a:
        job = await a.start("trap 'print got USR1' USR1; while :; do sleep 0.1; done", node="C")
        await running(a, job.id)
        await poll(lambda: len(job_pids(job.id)) >= 2, 10, "the shell and its sleep")
        paused = await a.pause(job.id)
        assert paused.state == "paused"
        await poll(lambda: all(proc_state(p) == "T" for p in job_pids(job.id)), 5, "every process stopped")
        resumed = await a.resume(job.id)
        assert resumed.state == "running"
        await poll(lambda: all(proc_state(p) != "T" for p in job_pids(job.id)), 5, "every process going")
        await a.signal(job.id, "USR1")

        async def said() -> bool:
            return b"got USR1" in await read_all(a, job.id)

        await poll(said, 10, "the trap's output, read through A")
        await a.cancel(job.id)
        assert (await finished(a, job.id)).reason == "cancelled"


# -- a dead node loses nothing ------------------------------------------------------------


def cordon(fleet: Fleet, *names: str) -> None:
    for name in names:
        fleet["A"].call("node.cordon", {"name": name})


def uncordon(fleet: Fleet, *names: str) -> None:
    for name in names:
        fleet["A"].call("node.uncordon", {"name": name})


async def start_on_b(fleet: Fleet, client: Any, command: str, **options: Any) -> JobInfo:
    """Start an unpinned job that B runs: A and C are cordoned meanwhile."""
    cordon(fleet, "A", "C")
    try:
        job = await client.start(command, **options)
        info = await running(client, job.id)
    finally:
        uncordon(fleet, "A", "C")
    assert info.node == "B"
    return info


async def test_kill9_of_b_loses_its_jobs_within_the_lease_reruns_the_rerunnable_and_b_rejoins(
    whole: Fleet,
) -> None:
    fleet = whole
    runs = fleet.root / f"runs-{secrets.token_hex(4)}"
    async with await fleet["A"].client() as a:
        plain = await a.start("sleep 600", node="B")
        rerun = await start_on_b(
            fleet, a, f"print -r -- $CCXD_JOB_ID >> {runs}; sleep 600", retry_on_node_loss=True
        )
        on_a = await a.start("sleep 600", node="A")
        on_c = await a.start("sleep 600", node="C")
        others = {j.id: await running(a, j.id) for j in (on_a, on_c)}
        await running(a, plain.id)
        incarnation = fleet.node_infos()["B"]["incarnation"]

        killed_at = time.monotonic()
        fleet.kill9("B")
        lost = await finished(a, plain.id, timeout=LOST_WITHIN)
        assert lost.reason == "lost" and lost.node == "B"
        assert time.monotonic() - killed_at <= LOST_WITHIN
        assert (await finished(a, rerun.id, timeout=5)).reason == "lost"
        [_, again_id] = await poll(lambda: len(lines_of(runs)) >= 2 and lines_of(runs), 20, "the re-run")
        again = await running(a, again_id)
        assert again.retry_of == rerun.id and again.node in ("A", "C")
        assert (await a.get(rerun.id)).retried_by == again_id
        assert fleet.node_states() == {"A": "up", "B": "lost", "C": "up"}
        for job_id, before in others.items():  # nothing else changed
            now = await a.get(job_id)
            assert (now.state, now.pid, now.node) == ("running", before.pid, before.node)

        fleet.restart("B")
        fleet.wait_states({"B": "up"}, 3 * LEASE)
        assert fleet.node_infos(via="C")["B"]["incarnation"] > incarnation
        # B's old jobs outlived its daemon (ccxd-shim): the returning node kills them and
        # keeps the records the fleet wrote.
        await poll(lambda: not job_pids(plain.id) and not job_pids(rerun.id), 15, "B's lost jobs killed")
        for job_id in (plain.id, rerun.id):
            record = await fleet_get(fleet, "B", job_id)
            assert (record["state"], record["reason"]) == ("finished", "lost")
        assert lines_of(runs) == [rerun.id, again_id], "no third run"
        [row] = [line for line in fleet["A"].ctl("nodes").stdout.splitlines() if line.split()[:1] == ["B"]]
        assert "up" in row.split(), row
        for job_id in (again_id, on_a.id, on_c.id):
            await a.cancel(job_id)


async def fleet_get(fleet: Fleet, via: str, job_id: str) -> dict[str, Any]:
    record: dict[str, Any] = fleet[via].call("job.get", {"job_id": job_id})
    return record


async def test_a_partitioned_node_does_not_double_run_a_fenced_job_when_it_returns(whole: Fleet) -> None:
    fleet = whole
    runs = fleet.root / f"runs-{secrets.token_hex(4)}"
    ticker = f"print -r -- $CCXD_JOB_ID >> {runs}; i=0; while :; do print tick $((i++)); sleep 0.1; done"
    async with await fleet["A"].client() as a:
        first = await start_on_b(fleet, a, ticker, retry_on_node_loss=True)
        plain = await a.start("sleep 600", node="B")  # not re-runnable: B may run it on while cut off
        await running(a, plain.id)
        await poll(lambda: len(job_pids(first.id)) >= 1, 10, "the job's processes on B")
        incarnation = fleet.node_infos()["B"]["incarnation"]

        cut_at = time.monotonic()
        fleet.link_down("B")
        lost = await finished(a, first.id, timeout=LOST_WITHIN)
        assert lost.reason == "lost" and lost.node == "B"
        [_, second_id] = await poll(lambda: len(lines_of(runs)) >= 2 and lines_of(runs), 20, "the re-run")
        second = await running(a, second_id)
        assert second.retry_of == first.id and second.node in ("A", "C")
        # B, unable to renew its lease for a whole lease, stopped its re-runnable job itself:
        # while cut off, not only once it is back.
        # (Measured from the cut: a loaded machine may take a while to see the re-run running.)
        left = 2 * LOST_WITHIN - (time.monotonic() - cut_at)
        await poll(lambda: not job_pids(first.id), left, "B stopped its copy while cut off")
        assert fleet.node_states()["B"] == "lost"

        assert (await finished(a, plain.id, timeout=5)).reason == "lost"

        fleet.link_up("B")
        fleet.wait_states({"B": "up"}, 3 * LEASE + 5)
        await poll(lambda: not job_pids(plain.id), 10, "B's copy of its lost plain job killed on its return")
        assert fleet.node_infos()["B"]["incarnation"] > incarnation
        # B's writes from while it was cut off (journaled) reach Redis now, and are refused.
        wait_until(
            lambda: (
                (s := fleet["B"].call("daemon.status"))["store"] == "redis"
                and s["store_health"]["journal_bytes"] == 0
            ),
            15,
            "B's journal replayed",
        )
        after = await a.get(first.id)
        assert (after.state, after.reason, after.node) == ("finished", "lost", "B")
        assert (after.finished_at, after.output_bytes) == (lost.finished_at, lost.output_bytes)
        stored = await read_all(a, first.id)
        assert len(stored) == lost.output_bytes, "the stored output is what it was when lost"
        plain_after = await a.get(plain.id)
        assert (plain_after.state, plain_after.reason) == ("finished", "lost"), "B's kill is not recorded"
        now = await a.get(second_id)
        assert (now.state, now.node, now.pid) == ("running", second.node, second.pid), "the successor stands"
        assert lines_of(runs) == [first.id, second_id], "run once on B, once on its successor, never again"
        await a.cancel(second_id)
