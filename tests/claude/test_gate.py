"""The Claude admission gate: concurrency, usage-limit block, per-job waits (no processes)."""

from __future__ import annotations

import asyncio

from ccxd.claude.gate import CONCURRENCY_REASON, ClaudeGate, is_claude_job
from ccxd.jobs.job import Job
from ccxd.output.log import OutputLog
from ccxd.protocol import StartParams


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_job(name: str, argv: list[str]) -> Job:
    return Job(
        name,
        StartParams(command=argv),
        argv=argv,
        shell=None,
        cwd="/",
        log=OutputLog(65536),
        node="n",
        peer="",
        timeout=None,
        idle_timeout=None,
    )


def claude(name: str) -> Job:
    return make_job(name, ["/usr/local/bin/claude", "-p", "hi"])


def test_only_claude_programs_are_claude_jobs() -> None:
    assert is_claude_job(claude("a"))
    assert not is_claude_job(make_job("b", ["echo", "claude"]))


def test_concurrency_limit_is_the_queue_group_claude() -> None:
    from ccxd.supervision.queue import JobQueue

    gate = ClaudeGate(lambda: 2, lambda: None)
    assert gate.implicit_groups(claude("a")) == ("claude",)
    assert gate.implicit_groups(make_job("sh", ["sleep", "1"])) == ()
    assert gate.group_rule("claude") == (2, CONCURRENCY_REASON)
    assert gate.group_rule("build") is None
    queue = JobQueue(
        lambda n: (gate.group_rule(n) or (None, None))[0], lambda n: (gate.group_rule(n) or (0, None))[1]
    )
    for name in ("a", "b", "c"):
        queue.add(name, name, groups=("claude",))
    queue.add("sh", "sh")
    assert queue.pick(10, lambda _id: True) == ["a", "b", "sh"]
    assert queue.hold("c") == CONCURRENCY_REASON
    queue.finished(("claude",))
    assert queue.pick(10, lambda _id: True) == ["c"]


async def test_block_holds_claude_jobs_until_reset_and_kicks() -> None:
    clock = Clock()
    kicked = asyncio.Event()
    gate = ClaudeGate(lambda: 10, kicked.set, clock=clock)
    gate.block(clock.now + 0.05, "usage limit")
    j = claude("a")
    assert not gate.may_start(j)
    assert j.wait_until == clock.now + 0.05 and j.wait_reason == "usage limit"
    assert gate.may_start(make_job("sh", ["true"]))
    await asyncio.wait_for(kicked.wait(), 5)  # the timer fires at the reset
    clock.now += 0.05
    assert gate.may_start(j)
    assert gate.block_until is None and j.wait_until is None
    gate.close()


async def test_a_later_block_wins_and_own_waits_apply_to_any_job() -> None:
    clock = Clock()
    gate = ClaudeGate(lambda: 10, lambda: None, clock=clock)
    gate.block(clock.now + 100)
    gate.block(clock.now + 50)
    assert gate.block_until == clock.now + 100
    shell = make_job("sh", ["true"])
    shell.wait_until = clock.now + 10
    assert not gate.may_start(shell)
    clock.now += 10
    assert gate.may_start(shell)
    gate.close()


def test_finished_hooks_run_and_a_failing_hook_is_contained() -> None:
    gate = ClaudeGate(lambda: 1, lambda: None)
    seen: list[str] = []

    def bad(job: Job) -> None:
        raise RuntimeError("bug")

    gate.finished_hooks += [bad, lambda job: seen.append(job.id)]
    gate.finished(claude("x"))
    assert seen == ["x"]


def test_ps_shows_waits_and_retry_links() -> None:
    import time

    from ccxctl.render import describe_outcome
    from ccxd.protocol import JobInfo, JobReason, JobState

    until = 1_800_000_000.0
    waiting = JobInfo(
        id="b",
        state=JobState.QUEUED,
        command="claude",
        wait_until=until,
        wait_reason="usage limit",
        attempt=2,
    )
    hhmm = time.strftime("%H:%M", time.localtime(until))
    assert describe_outcome(waiting) == f"waiting until {hhmm} (usage limit) (attempt 2)"
    held = JobInfo(id="c", state=JobState.QUEUED, command="claude", wait_reason="claude concurrency limit")
    assert describe_outcome(held) == "waiting (claude concurrency limit)"
    failed = JobInfo(
        id="a",
        state=JobState.FINISHED,
        command="claude",
        reason=JobReason.EXITED,
        exit_code=1,
        retried_by="b",
    )
    assert describe_outcome(failed) == "exit 1 → retried as b"
