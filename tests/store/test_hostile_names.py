"""Names a client chooses (sessions, node ids) reach no other key, and a refused write is not an outage."""

from __future__ import annotations

import logging
import subprocess
import time

import pytest

from ccxd.protocol import HistoryParams, JobState
from ccxd.store import keys
from ccxd.store.memory import MemoryStore
from ccxd.store.ops import AppendOutput, SaveJob
from ccxd.store.writer import StoreWriter

from .test_redis_store import job, open_store

HOSTILE = [
    "x",
    "x:jobs",  # session x's job list under the unescaped scheme
    "x:jobs:jobs",
    "a:b",
    ":",
    "%3A",  # what ':' escapes to
    "*",
    "{x}",
    "line\nbreak",
    "tab\tand space ",
    "\x00nul",
    "s" * 300,
    "日本語 セッション",
    "é:ü",
]


def redis_cli(redis_server, *args: str) -> str:
    res = subprocess.run(
        ["redis-cli", "-s", str(redis_server.socket), *args], capture_output=True, text=True, check=True
    )
    return res.stdout.strip()


def test_escaped_names_are_distinct_and_hold_no_separator():
    parts = [keys.part(n) for n in HOSTILE]
    assert len(set(parts)) == len(HOSTILE)
    assert not any(c in p for p in parts for c in ":*{}\n\t \x00")
    assert keys.part("build-1.2/feature@host") == "build-1.2/feature@host"  # plain names keep their keys
    assert keys.session("x:jobs") != keys.session_jobs("x")


@pytest.mark.parametrize("scripts", [True, False], ids=["scripts", "plain-commands"])
async def test_hostile_session_names_round_trip(redis_server, scripts):
    store = await open_store(redis_server)
    store._scripts = scripts
    now = time.time()
    ops: list = []
    for i, name in enumerate(HOSTILE):
        for n in range(2):
            ops.append(SaveJob(job(f"{i}-{n}", session=name, queued_at=now + i + n / 10)))
    assert await store.apply(ops) == []
    listed = await store.sessions(100)
    assert sorted((s.name, s.jobs) for s in listed) == sorted((name, 2) for name in HOSTILE)
    for i, name in enumerate(HOSTILE):
        detail = await store.session(name, 10)
        assert detail is not None and detail.session.name == name
        assert [j.id for j in detail.jobs] == [f"{i}-1", f"{i}-0"]
        assert [j.id for j in await store.list_jobs(HistoryParams(session=name))] == [f"{i}-1", f"{i}-0"]
    assert len(await store.list_jobs(HistoryParams(limit=1000))) == 2 * len(HOSTILE)
    await store.close()


async def test_a_hostile_node_id_keeps_its_jobs_apart(redis_server):
    plain = await open_store(redis_server, node="n")
    hostile = await open_store(redis_server, node="n:job:{x} *")
    await plain.apply([SaveJob(job("a", node="n")), AppendOutput("a", 0, 0, 0, b"plain\n")])
    running = job("b", node="n:job:{x} *", state=JobState.RUNNING, reason=None)
    assert await hostile.apply([SaveJob(running), AppendOutput("b", 0, 0, 0, b"hostile\n")]) == []
    assert b"".join(c.data for c in await plain.read_output("b", 0, 1 << 20)) == b"hostile\n"
    assert b"".join(c.data for c in await hostile.read_output("a", 0, 1 << 20)) == b"plain\n"
    assert [j.id for j in await hostile.unfinished_jobs()] == ["b"]
    assert await plain.unfinished_jobs() == []
    got = await plain.get_job("b")
    assert got is not None and got.node == "n:job:{x} *"
    await plain.close()
    await hostile.close()


@pytest.mark.parametrize("scripts", [True, False], ids=["scripts", "plain-commands"])
async def test_a_refused_write_fails_alone_and_names_its_key(redis_server, scripts):
    store = await open_store(redis_server)
    store._scripts = scripts
    # Someone left a key of another type where session "poisoned" keeps its record.
    redis_cli(redis_server, "RPUSH", keys.session("poisoned"), "not a hash")
    refused = await store.apply(
        [
            SaveJob(job("before")),
            SaveJob(job("victim", session="poisoned")),
            AppendOutput("victim", 0, 0, 0, b"victim output\n"),
            SaveJob(job("after", session="fine")),
            AppendOutput("after", 0, 0, 0, b"after output\n"),
        ]
    )
    [r] = refused
    assert r.key == keys.session("poisoned") and "WRONGTYPE" in r.error and "victim" in r.what
    assert {j.id for j in await store.list_jobs(HistoryParams(limit=10))} == {"before", "victim", "after"}
    assert b"".join(c.data for c in await store.read_output("after", 0, 1 << 20)) == b"after output\n"
    assert b"".join(c.data for c in await store.read_output("victim", 0, 1 << 20)) == b"victim output\n"
    assert [s.name for s in await store.sessions(10)] == ["fine"]
    await store.close()


async def test_the_writer_counts_and_logs_a_refusal_and_stays_direct(redis_server, tmp_root, caplog):
    store = await open_store(redis_server)
    redis_cli(redis_server, "SET", keys.output("n1", "victim"), "a string, not a stream")
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=1 << 20)
    writer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="ccxd.store"):
            writer.submit(SaveJob(job("victim")))
            writer.submit(AppendOutput("victim", 0, 0, 0, b"lost\n"))
            writer.submit(SaveJob(job("other")))
            assert await writer.flush(5)
        assert not writer.degraded and writer.pending == 0 and writer.journal.count == 0
        health = writer.health()
        assert health.refused == 1 and health.journal_dropped == 0
        assert health.last_refused is not None and keys.output("n1", "victim") in health.last_refused
        assert [r.getMessage() for r in caplog.records if keys.output("n1", "victim") in r.getMessage()]
        assert (await store.get_job("other")) is not None
        assert writer.describe() == "redis"
    finally:
        await writer.close()
        await store.close()


async def test_a_full_journal_is_logged_counted_and_shown(redis_server, tmp_root, caplog):
    store = await open_store(redis_server)
    writer = StoreWriter(store, tmp_root / "journal", journal_limit=4096)
    writer.degraded = True  # as while Redis is down
    with caplog.at_level(logging.ERROR, logger="ccxd.store"):
        for i in range(20):
            writer.submit(AppendOutput("big", i, 0, i * 1000, b"z" * 1000))
    health = writer.health()
    assert health.journal_full and health.journal_dropped == writer.journal.dropped > 0
    assert "journal full" in writer.describe() and f"{health.journal_dropped} writes dropped" in writer.describe()
    [logged] = [r.getMessage() for r in caplog.records if "journal full" in r.getMessage()]  # once, not per write
    assert "journal_max_bytes = 4096" in logged
    writer.journal.close()
    await store.close()


async def test_keys_of_escaped_names_from_an_older_store_are_moved(redis_server, monkeypatch):
    # The unescaped scheme is this one with part() the identity (and no marker key).
    monkeypatch.setattr(keys, "part", lambda name: name)
    old = await open_store(redis_server, node="old:node")
    await old.apply(
        [
            SaveJob(job("j1", session="a:b", node="old:node")),
            SaveJob(job("j2", session="plain", node="old:node")),
            AppendOutput("j1", 0, 0, 0, b"from the old release\n"),
        ]
    )
    await old.close()
    redis_cli(redis_server, "DEL", keys.NAMES_ESCAPED)
    monkeypatch.undo()
    assert redis_cli(redis_server, "EXISTS", "ccxd:v1:session:a:b") == "1"

    store = await open_store(redis_server, node="old:node")
    assert sorted((s.name, s.jobs) for s in await store.sessions(10)) == [("a:b", 1), ("plain", 1)]
    detail = await store.session("a:b", 10)
    assert detail is not None and [j.id for j in detail.jobs] == ["j1"]
    assert b"".join(c.data for c in await store.read_output("j1", 0, 1 << 20)) == b"from the old release\n"
    assert redis_cli(redis_server, "EXISTS", "ccxd:v1:session:a:b") == "0"
    await store.close()


async def test_memory_store_takes_the_same_names(tmp_root):
    store = MemoryStore("n1")
    now = time.time()
    ops = [SaveJob(job(str(i), session=name, queued_at=now + i)) for i, name in enumerate(HOSTILE)]
    assert await store.apply(ops) == []
    assert sorted(s.name for s in await store.sessions(100)) == sorted(HOSTILE)
