"""Adaptive retry and the Claude limits, with the real CLI under a real ccxd against the fake API.

Each test scripts the fake Anthropic API, runs ``claude -p`` as ccxd jobs and
follows the retry chain through the ``job.retry`` notifications.  Waits are
made short through the per-job ``retry`` policy and the config, never by
sleeping in the test.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ccxd.client.connection import Client
from ccxd.protocol import JobFinished, JobInfo, JobRetry, RetryParams

# The fake API and the CLI fixtures come with the Claude job kind (tests/claude/conftest.py).
pytest.importorskip("tests.claude.fake_api", reason="needs tests/claude/fake_api.py (the Claude job kind)")
from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Hang, Stream, UsageLimit, rate_limited

pytestmark = pytest.mark.timeout(240)

MODEL = "claude-sonnet-4-5"  # default 32000 output tokens, maximum 64000


def claude_argv(claude_bin: str, prompt: str = "say hello", model: str | None = MODEL) -> list[str]:
    argv = [claude_bin, "-p", prompt, "--output-format", "stream-json", "--verbose"]
    return [*argv, "--model", model] if model else argv


def start_daemon(
    daemon_factory: Any, api: FakeApi, home: Path, *, gateway: bool = False, **config: str
) -> Any:
    """A ccxd whose jobs inherit the CLI's environment (so nothing secret is in job params)."""
    env = claude_env(api, home, gateway=gateway)
    env.update({f"CCXD_{k.upper()}": v for k, v in config.items()})
    return daemon_factory(extra_env=env, root=home / "ccxd")


async def chain(c: Client, job_id: str, *, already_following: bool = True) -> AsyncIterator[Any]:
    """Every event of ``job_id`` and of the attempts that retry it, in order."""
    current: str | None = job_id
    follow = already_following
    while current is not None:
        events = c.events(current) if follow else c.follow(current)
        nxt = None
        async for ev in events:
            if isinstance(ev, JobRetry):
                nxt = ev.next_job_id
            yield ev
        current, follow = nxt, False


async def run_chain(c: Client, argv: list[str], **options: Any) -> tuple[list[Any], list[JobInfo]]:
    """Start a Claude job and follow its chain to the end; the events and the final records."""
    job = await c.start(argv, subscribe=True, cwd=options.pop("cwd", None), **options)
    events = [ev async for ev in chain(c, job.id)]
    finals = [ev.job for ev in events if isinstance(ev, JobFinished)]
    return events, finals


# -- stall ----------------------------------------------------------------------


async def test_stall_is_killed_and_retried(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.script(Hang())  # first attempt: the stream stops mid-answer and never ends
    fake_api.default = Stream(text="after the stall")
    d = start_daemon(daemon_factory, fake_api, claude_home)
    c = await d.client()
    events, finals = await run_chain(c, claude_argv(claude_bin), idle_timeout=3, cwd=str(claude_home))
    first, second = finals
    assert first.reason == "idle_timeout" and first.retried_by == second.id
    assert second.attempt == 2 and second.retry_of == first.id
    assert second.reason == "exited" and second.exit_code == 0
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "stall" and retry.delay == 0
    out = await c.read(second.id)
    assert "after the stall" in "".join(ch.data for ch in out.chunks)
    await c.close()


# -- concurrency ------------------------------------------------------------------


async def test_claude_concurrency_limit_is_honoured_and_shell_jobs_pass(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.default = Stream(text="slow answer " * 40, piece=40, delay=0.1)
    d = start_daemon(daemon_factory, fake_api, claude_home, claude_max_concurrent="1")
    c = await d.client()
    jobs = [await c.start(claude_argv(claude_bin), subscribe=True, cwd=str(claude_home)) for _ in range(3)]
    assert [j.state for j in jobs[1:]] == ["queued", "queued"]
    assert all(j.wait_reason == "claude concurrency limit" for j in jobs[1:])
    # A shell job is not held up by the Claude jobs waiting in front of it.
    shell = [ev async for ev in c.run("echo not held")]
    assert isinstance(shell[-1], JobFinished) and shell[-1].job.exit_code == 0
    finals = []
    for j in jobs:
        async for ev in c.events(j.id):
            if isinstance(ev, JobFinished):
                finals.append(ev.job)
    assert all(f.reason == "exited" and f.exit_code == 0 for f in finals)
    spans = sorted((f.started_at or 0, f.finished_at or 0) for f in finals)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two Claude jobs ran at once"
    await c.close()


def ccxctl(d: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=timeout, check=False
    )


def test_ccxctl_run_follows_the_chain_to_the_last_attempt(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.script(Hang())
    fake_api.default = Stream(text="the second attempt answered")
    d = start_daemon(daemon_factory, fake_api, claude_home)
    res = ccxctl(
        d, "run", "--argv", "--idle-timeout", "3", "--cwd", str(claude_home), "--", *claude_argv(claude_bin)
    )
    assert res.returncode == 0, res.stderr
    assert b"the second attempt answered" in res.stdout
    assert b"stall" in res.stderr and b"attempt 2" in res.stderr


# -- rate limit -------------------------------------------------------------------


async def test_429_then_success_is_one_chain_that_succeeds(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    # The CLI retries once by itself (CLAUDE_CODE_MAX_RETRIES=1), then gives up; ccxd waits and reruns.
    fake_api.script(rate_limited(1), rate_limited(1))
    fake_api.default = Stream(text="finally")
    d = start_daemon(daemon_factory, fake_api, claude_home)
    c = await d.client()
    retry_policy = RetryParams(backoff_base=0.5, jitter=0.0)
    events, finals = await run_chain(c, claude_argv(claude_bin), retry=retry_policy, cwd=str(claude_home))
    first, second = finals
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "rate_limit" and retry.next_job_id == second.id
    # Aware of the CLI's own retry: the wait starts beyond the CLI's last delay (retry-after: 1 s).
    assert retry.delay >= 2.0
    assert first.retried_by == second.id and second.retry_of == first.id and second.attempt == 2
    assert second.reason == "exited" and second.exit_code == 0
    assert (second.started_at or 0) >= (first.finished_at or 0) + retry.delay - 0.05
    assert len(fake_api.messages) == 3  # two refused by the fake, one answered
    stored = await c.get(first.id)
    assert stored.retried_by == second.id and "rate_limit" in (stored.retry_note or "")
    await c.close()


# -- output token limit -------------------------------------------------------------


async def test_token_limit_reruns_fresh_with_more_output_tokens(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    # The CLI itself asks 3 times to continue a cut answer before it reports the limit.
    cut = Stream(text="a very long answer that is cut", stop_reason="max_tokens")
    fake_api.script(cut, cut, cut, cut)
    fake_api.default = Stream(text="short enough now")
    d = start_daemon(daemon_factory, fake_api, claude_home)
    c = await d.client()
    events, finals = await run_chain(c, claude_argv(claude_bin), cwd=str(claude_home))
    first, second = finals
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "token_limit" and retry.max_output_tokens == 64000 and retry.delay == 0
    assert second.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "64000"
    assert second.exit_code == 0 and second.attempt == 2
    sent = fake_api.messages
    assert [m.body["max_tokens"] for m in sent if m.body] == [32000] * 4 + [64000]
    # A fresh run of the original request, not a resume of the overlong conversation.
    assert "--resume" not in second.argv and "--continue" not in second.argv
    # The CLI's own continuations grow the conversation; the retry starts from the request again.
    assert len(sent[1].body["messages"]) > len(sent[0].body["messages"])
    assert len(sent[4].body["messages"]) == len(sent[0].body["messages"])
    assert len(finals) == 2
    await c.close()


async def test_token_limit_at_the_model_maximum_asks_for_concision_then_gives_up(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.default = Stream(text="still far too long", stop_reason="max_tokens")
    d = start_daemon(daemon_factory, fake_api, claude_home)
    c = await d.client()
    # The CLI's default model answers with its maximum output tokens already.
    argv = claude_argv(claude_bin, prompt="Write an essay.", model=None)
    events, finals = await run_chain(c, argv, retry=RetryParams(max_attempts=3), cwd=str(claude_home))
    assert [f.attempt for f in finals] == [1, 2, 3]
    retries = [ev for ev in events if isinstance(ev, JobRetry)]
    assert [r.concision_level for r in retries] == [1, 2]
    assert all(r.max_output_tokens is None for r in retries)  # never above the model's maximum
    assert len({m.body["max_tokens"] for m in fake_api.messages if m.body}) == 1
    prompts = {_prompt(m.body) for m in fake_api.messages if m.body}
    assert any("Be concise" in p for p in prompts) and any("words" in p for p in prompts)
    assert "gave up after 3 attempt(s)" in (finals[-1].retry_note or "")
    assert finals[-1].retried_by is None
    await c.close()


def _prompt(body: dict[str, Any]) -> str:
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


# -- usage limit ------------------------------------------------------------------


class LimitedApi(FakeApi):
    """Refuses every message with a usage limit until ``resets_at``, as the real API does."""

    def __init__(self, resets_at: int) -> None:
        super().__init__()
        self.resets_at = resets_at
        self.answered_at: list[float] = []

    def _next(self) -> Any:
        now = time.time()
        if now < self.resets_at:
            return UsageLimit(resets_at=self.resets_at)
        self.answered_at.append(now)
        return super()._next()


@pytest.fixture
def limited_api() -> Any:
    api = LimitedApi(int(time.time()) + 6).start()
    yield api
    api.stop()


async def test_usage_limit_waits_for_the_reset_and_holds_other_claude_jobs(
    daemon_factory: Any, claude_bin: str, limited_api: LimitedApi, claude_home: Path
) -> None:
    fake_api, resets = limited_api, limited_api.resets_at
    fake_api.default = Stream(text="after the reset")
    d = start_daemon(daemon_factory, fake_api, claude_home, gateway=True, claude_usage_limit_margin="0.5")
    c = await d.client()
    first = await c.start(claude_argv(claude_bin), subscribe=True, cwd=str(claude_home))
    retry = None
    async for ev in c.events(first.id):
        if isinstance(ev, JobRetry):
            retry = ev
    assert retry is not None and retry.error_class == "usage_limit"
    assert retry.wait_until == pytest.approx(resets + 0.5, abs=0.01)
    # Another Claude job started now waits for the same reset instead of failing too.
    other = await c.start(claude_argv(claude_bin), subscribe=True, cwd=str(claude_home))
    assert other.state == "queued" and other.wait_reason == "usage limit"
    ps = ccxctl(d, "ps")
    assert ps.returncode == 0
    hhmm = time.strftime("%H:%M", time.localtime(resets + 0.5))
    assert ps.stdout.decode().count(f"waiting until {hhmm}") == 2, ps.stdout.decode()
    finals = [
        ev.job
        async for ev in chain(c, retry.next_job_id, already_following=False)
        if isinstance(ev, JobFinished)
    ]
    finals += [ev.job async for ev in c.events(other.id) if isinstance(ev, JobFinished)]
    for f in finals:
        assert f.exit_code == 0 and (f.started_at or 0) >= resets
    assert len(fake_api.answered_at) == 2  # one answer per job, both after the reset
    await c.close()


async def test_usage_limit_wait_survives_a_daemon_restart(
    daemon_factory: Any, claude_bin: str, limited_api: LimitedApi, claude_home: Path
) -> None:
    limited_api.resets_at = resets = int(time.time()) + 10  # time for a stop and a start
    fake_api = limited_api
    fake_api.default = Stream(text="after the restart and the reset")
    d = start_daemon(daemon_factory, fake_api, claude_home, gateway=True, claude_usage_limit_margin="0.5")
    c = await d.client()
    first = await c.start(claude_argv(claude_bin), subscribe=True, cwd=str(claude_home))
    retry = None
    async for ev in c.events(first.id):
        if isinstance(ev, JobRetry):
            retry = ev
    assert retry is not None and retry.wait_until is not None
    await c.close()
    d.stop()  # SIGTERM: an orderly stop cancels queued jobs, but not a waiting retry
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c2 = await d2.client()
    waiting = await c2.get(retry.next_job_id)
    assert waiting.state == "queued" and waiting.wait_reason == "usage limit"
    assert waiting.wait_until == pytest.approx(retry.wait_until) and waiting.attempt == 2
    # The daemon-wide block came back too: a new Claude job waits for the same reset.
    other = await c2.start(claude_argv(claude_bin), cwd=str(claude_home))
    assert other.state == "queued" and other.wait_until == pytest.approx(retry.wait_until)
    done = [ev.job async for ev in c2.follow(retry.next_job_id) if isinstance(ev, JobFinished)]
    assert done[0].exit_code == 0 and (done[0].started_at or 0) >= resets
    assert done[0].retry_of == first.id
    await c2.close()
