"""Error hooks for retry exhaustion: the Claude retry runner gives up, the hooks hear ``retry_exhausted``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ccxd.claude.gate import ClaudeGate
from ccxd.claude.retry_policy import Failure
from ccxd.claude.retry_runner import RetryRunner
from ccxd.config import Config
from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.hooks.runner import HookRunner
from ccxd.jobs.job import Job
from ccxd.proc.reaper import Reaper
from ccxd.protocol import StartParams
from ccxd.store.memory import MemoryStore
from ccxd.store.writer import StoreWriter
from ccxd.supervision.supervisor import Supervisor

ERROR_HOOK = """
async def seen(ctx):
    return {"annotations": {"event": ctx.error, "attempt": ctx.job.attempt}}
HOOKS = {"error": [seen]}
"""


async def until(job: Job, condition) -> None:  # type: ignore[no-untyped-def]
    done = asyncio.get_running_loop().create_future()

    def check() -> None:
        if condition() and not done.done():
            done.set_result(None)

    job.add_listener(check)
    check()
    await asyncio.wait_for(done, 30)
    job.remove_listener(check)


async def test_the_last_failed_attempt_runs_the_error_hooks(tmp_path: Path) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "err.py").write_text(ERROR_HOOK)
    reaper = Reaper(asyncio.get_running_loop())
    reaper.start()
    store = MemoryStore("n")
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    writer.start()
    settings = EstimateSettings(enabled=False, default=None, k=3, min_samples=5, bootstrap=None)
    recorder = Recorder(store, writer, lambda: settings)
    config = Config(claude_retry_max_attempts=1, hooks_dir=str(tmp_path / "hooks"), hooks_entry_points=False)
    (tmp_path / "spool").mkdir()
    sup = Supervisor(config, reaper, tmp_path / "spool", recorder, hooks=HookRunner(config, reaper))
    gate = ClaudeGate(lambda: config.claude_max_concurrent, sup.start_ready, is_claude=lambda job: True)
    sup.gate = gate
    RetryRunner(sup, gate, config, recorder, inspect=lambda job: Failure(error_class="rate_limit"))
    try:
        job = await sup.start(StartParams(command=["sh", "-c", "exit 3"], timeout=0))
        await until(job, lambda: job.finished)
        assert job.retried_by is None and job.retry_note is not None and "max_attempts" in job.retry_note
        await until(job, lambda: any(h.point == "error" for h in job.hooks))
        assert job.annotations == {"event": "retry_exhausted", "attempt": 1}
        await writer.flush(5)
        stored = await store.get_job(job.id)
        assert stored is not None and stored.annotations == job.annotations
    finally:
        await sup.shutdown("cancel", 0)
        gate.close()
        await writer.close(timeout=5)
        reaper.stop()
