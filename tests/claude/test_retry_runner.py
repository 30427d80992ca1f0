"""The retry runner with a real supervisor, real processes and a store, across a restart.

The failure is given by an injected ``inspect`` (what the stream-json
classifier would say), so this pins the runner's own duties: linking attempts,
the daemon-wide block, and the saved state a restarted daemon takes back.
tests/claude/test_claude_retry.py runs the same paths with the real CLI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccxd.claude.gate import ClaudeGate
from ccxd.claude.retry_policy import Failure
from ccxd.claude.retry_runner import RetryRunner
from ccxd.config import Config
from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.jobs.job import Job
from ccxd.proc.reaper import Reaper
from ccxd.protocol import StartParams
from ccxd.store.memory import MemoryStore
from ccxd.store.writer import StoreWriter
from ccxd.supervision.supervisor import Supervisor


@dataclass
class Daemon:
    sup: Supervisor
    gate: ClaudeGate
    runner: RetryRunner


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Reaper, MemoryStore, StoreWriter, Recorder]]:
    reaper = Reaper(asyncio.get_running_loop())
    reaper.start()
    store = MemoryStore("n")
    await store.open()
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    writer.start()
    settings = EstimateSettings(enabled=False, default=None, k=3, min_samples=5, bootstrap=None)
    recorder = Recorder(store, writer, lambda: settings)
    yield reaper, store, writer, recorder
    await writer.close(timeout=5)
    reaper.stop()


def usage_limit_once(reset: float) -> Callable[[Job], Failure | None]:
    def inspect(job: Job) -> Failure | None:
        return Failure(error_class="usage_limit", resets_at=reset) if job.attempt == 1 else None

    return inspect


def build(
    tmp_path: Path,
    parts: tuple[Reaper, MemoryStore, StoreWriter, Recorder],
    inspect: Callable[[Job], Failure | None],
) -> Daemon:
    reaper, _, _, recorder = parts
    config = Config(claude_usage_limit_margin=0.0)
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    sup = Supervisor(config, reaper, spool, recorder)
    gate = ClaudeGate(lambda: config.claude_max_concurrent, sup.start_ready, is_claude=lambda job: True)
    sup.gate = gate
    return Daemon(sup, gate, RetryRunner(sup, gate, config, recorder, inspect=inspect))


async def finished(job: Job) -> Job:
    done = asyncio.get_running_loop().create_future()

    def check() -> None:
        if job.finished and not done.done():
            done.set_result(None)

    job.add_listener(check)
    check()
    await asyncio.wait_for(done, 30)
    job.remove_listener(check)
    return job


async def test_usage_limit_attempt_and_block_survive_a_restart(tmp_path: Path, parts) -> None:  # type: ignore[no-untyped-def]
    _, store, writer, _ = parts
    reset = time.time() + 2.0
    one = build(tmp_path, parts, usage_limit_once(reset))
    first = await finished(await one.sup.start(StartParams(command=["sh", "-c", "exit 3"], timeout=0)))
    assert first.retried_by is not None and first.retry_notice is not None
    nxt = one.sup.get(first.retried_by)
    assert (
        nxt.state == "queued" and nxt.wait_until == pytest.approx(reset) and nxt.wait_reason == "usage limit"
    )
    assert nxt.attempt == 2 and nxt.retry_of == first.id
    assert one.gate.block_until == pytest.approx(reset)
    # Another Claude job waits for the same reset.
    other = await one.sup.start(StartParams(command=["true"], timeout=0))
    assert other.state == "queued" and other.wait_until == pytest.approx(reset)

    await one.sup.shutdown("cancel", 0)
    one.gate.close()
    assert not nxt.finished  # an orderly stop leaves the waiting attempt to the next daemon
    assert other.finished and other.reason == "cancelled"
    await writer.flush(5)
    state = await store.claude_state()
    assert state is not None and state.block_until == pytest.approx(reset)
    assert [p.job_id for p in state.pending] == [nxt.id]

    two = build(tmp_path, parts, usage_limit_once(reset))
    assert await two.runner.restore(store) == {nxt.id}
    again = two.sup.get(nxt.id)
    assert again.state == "queued" and again.attempt == 2 and again.retry_of == first.id
    assert two.gate.block_until == pytest.approx(reset)
    done = await finished(again)
    assert done.exit_code == 3 and (done.started_at or 0) >= reset
    assert done.retried_by is None  # the classifier had nothing to say about attempt 2
    await writer.flush(5)
    state = await store.claude_state()
    assert state is not None and state.pending == []
    two.gate.close()
    await two.sup.shutdown("cancel", 0)


async def test_an_attempt_that_needs_a_secret_is_not_kept(tmp_path: Path, parts) -> None:  # type: ignore[no-untyped-def]
    one = build(tmp_path, parts, usage_limit_once(time.time() + 60))
    params = StartParams(command=["sh", "-c", "exit 1"], env={"ANTHROPIC_API_KEY": "sk-secret"}, timeout=0)
    first = await finished(await one.sup.start(params))
    assert first.retried_by is not None
    nxt = one.sup.get(first.retried_by)
    await one.sup.shutdown("cancel", 0)
    one.gate.close()
    assert nxt.finished and nxt.reason == "cancelled"
    _, store, writer, _ = parts
    await writer.flush(5)
    state = await store.claude_state()
    assert state is not None and state.pending == []
    assert "sk-secret" not in repr(state)
