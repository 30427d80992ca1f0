"""A Claude job running when ccxd is SIGKILLed keeps its kind after the next daemon adopts it.

Real daemons (the first one killed with SIGKILL, the second started on the same
state and runtime directories), the real ``claude`` CLI under ccxd-shim, the
fake API.  The API holds its answers until the second daemon has adopted the
job (or stalls for good), so what decides the job's fate happens after the
adoption: stall detection, classification, retry with its chain, the
usage-limit block.  The job's API key is in its own environment (a secret
ccxd never writes to a file), so the retries show it came back.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ccxd import paths
from ccxd.client.connection import Client
from ccxd.protocol import JobFinished, JobInfo, JobRetry, OutputChunk
from ccxd.supervision.shim import find_shim
from tests.claude.cli import claude_env, gateway_token
from tests.claude.fake_api import FakeApi, Hang, Reply, Stream, UsageLimit

pytestmark = pytest.mark.timeout(240)

MODEL = "claude-sonnet-4-5"  # default 32000 output tokens, maximum 64000
KEY = "sk-ant-the-jobs-own-key"  # in the job's env only: the daemon's env has another


@pytest.fixture(autouse=True)
def _need_shim() -> None:
    if find_shim() is None:
        pytest.fail("ccxd-shim is not built (python -m ccxd.supervision.shim)")


class GatedApi(FakeApi):
    """Answers nothing until :attr:`release` is set; refuses with a usage limit until ``resets_at``."""

    def __init__(self, resets_at: int | None = None) -> None:
        super().__init__()
        self.release = threading.Event()
        self.resets_at = resets_at
        self.answered_at: list[float] = []

    def _next(self) -> Reply:
        self.release.wait(120)
        if self.resets_at is not None and time.time() < self.resets_at:
            return UsageLimit(resets_at=self.resets_at)
        self.answered_at.append(time.time())
        return super()._next()


@pytest.fixture
def gated_api() -> Iterator[GatedApi]:
    api = GatedApi().start()
    yield api
    api.release.set()
    api.stop()


def start_daemon(
    daemon_factory: Any, claude_bin: str, api: FakeApi, home: Path, path: Path | None = None, **config: str
) -> Any:
    """A ccxd for Claude jobs whose only credential is the one in each job's own env."""
    env = claude_env(api, home)
    del env["ANTHROPIC_API_KEY"]
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    env["CCXD_CLAUDE_PROGRAM"] = claude_bin
    env.update({f"CCXD_{k.upper()}": v for k, v in config.items()})
    return daemon_factory(extra_env=env, root=home / "ccxd")


async def start_claude(c: Client, home: Path, credential: dict[str, str]) -> JobInfo:
    """A ``kind: "claude"`` job; returns once it printed its first event (it runs)."""
    job = await c.start(
        None, kind="claude", prompt="say hello", model=MODEL, cwd=str(home), env=credential, subscribe=True
    )
    async for ev in c.events(job.id):
        if isinstance(ev, OutputChunk):
            return job
    raise AssertionError("the Claude job ended before its first event")


def crash(d: Any, job: JobInfo, secret: str) -> None:
    """SIGKILL the daemon; the job's adoption record holds its request, but not its secret."""
    d.stop(9)
    record = (paths.jobs_dir(d.socket) / f"{job.id}.job").read_text()
    assert '"start":{"params":' in record and secret not in record


async def chain(c: Client, job_id: str) -> AsyncIterator[Any]:
    """Every event of ``job_id`` (followed afresh) and of the attempts that retry it."""
    current: str | None = job_id
    while current is not None:
        nxt = None
        async for ev in c.follow(current):
            if isinstance(ev, JobRetry):
                nxt = ev.next_job_id
            yield ev
        current = nxt


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [ev async for ev in events]


def keys_sent(api: FakeApi) -> list[str | None]:
    return [m.headers.get("x-api-key") or m.headers.get("X-Api-Key") for m in api.messages]


async def test_a_stalled_job_adopted_after_a_crash_is_stall_killed_and_retried(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.script(Hang())  # the first answer stops mid-way and never ends
    fake_api.default = Stream(text="after the stall")
    stall = 6.0
    d = start_daemon(daemon_factory, claude_bin, fake_api, claude_home, claude_stall_timeout=str(stall))
    c = await d.client()
    first = await start_claude(c, claude_home, {"ANTHROPIC_API_KEY": KEY})
    await c.close()
    crash(d, first, KEY)
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    adopted_at = time.time()
    c2 = await d2.client()
    assert (await c2.get(first.id)).state == "running"
    events = await asyncio.wait_for(collect(chain(c2, first.id)), stall + 60)  # not minutes
    stalled, second = [ev.job for ev in events if isinstance(ev, JobFinished)]
    # Stall-killed by the adopting daemon, within its stall timeout (counted from the
    # job's last output, which came before the crash), not left to run for minutes.
    assert stalled.reason == "idle_timeout" and stalled.claude is not None
    assert stalled.claude.error_class == "stall"
    assert (stalled.finished_at or 0) - adopted_at < stall + 5
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "stall" and retry.next_job_id == second.id
    assert (second.attempt, second.retry_of, stalled.retried_by) == (2, first.id, second.id)
    assert second.reason == "exited" and second.exit_code == 0
    out = await c2.read(second.id)
    assert "after the stall" in "".join(ch.data for ch in out.chunks)
    assert keys_sent(fake_api) == [KEY, KEY]  # the job's own key, read back for its retry
    await c2.close()


async def test_a_token_limit_answered_after_adoption_reruns_with_more_output_tokens(
    daemon_factory: Any, claude_bin: str, gated_api: GatedApi, claude_home: Path
) -> None:
    cut = Stream(text="a very long answer that is cut", stop_reason="max_tokens")
    gated_api.script(cut, cut, cut, cut)  # the CLI asks 3 times to go on, then reports the limit
    gated_api.default = Stream(text="short enough now")
    d = start_daemon(daemon_factory, claude_bin, gated_api, claude_home, claude_max_concurrent="1")
    c = await d.client()
    first = await start_claude(c, claude_home, {"ANTHROPIC_API_KEY": KEY})
    await c.close()
    crash(d, first, KEY)
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c2 = await d2.client()
    assert (await c2.get(first.id)).state == "running"
    # The adopted job counts against claude_max_concurrent like one started here.
    other = await c2.start(
        None, kind="claude", prompt="hi", cwd=str(claude_home), env={"ANTHROPIC_API_KEY": KEY}
    )
    assert other.state == "queued" and other.wait_reason == "claude concurrency limit"
    await c2.cancel(other.id)
    gated_api.release.set()  # the answers come now, to the adopted job
    events = [ev async for ev in chain(c2, first.id)]
    cut_off, second = [ev.job for ev in events if isinstance(ev, JobFinished)]
    assert cut_off.claude is not None and cut_off.claude.error_class == "token_limit"
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "token_limit" and retry.max_output_tokens == 64000
    assert second.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "64000"
    assert (second.attempt, second.retry_of, second.exit_code) == (2, first.id, 0)
    sent = gated_api.messages
    assert [m.body["max_tokens"] for m in sent if m.body] == [32000] * 4 + [64000]
    assert keys_sent(gated_api) == [KEY] * 5
    await c2.close()


async def test_a_usage_limit_after_adoption_holds_every_claude_job_until_the_reset(
    daemon_factory: Any, claude_bin: str, gated_api: GatedApi, claude_home: Path
) -> None:
    gated_api.resets_at = resets = int(time.time()) + 25  # time for a crash, a start and an adoption
    gated_api.default = Stream(text="after the reset")
    d = start_daemon(daemon_factory, claude_bin, gated_api, claude_home, claude_usage_limit_margin="0.5")
    # Gateway mode (where the CLI reads usage limits) only with this token: it must come back.
    gateway = {"ANTHROPIC_AUTH_TOKEN": gateway_token()}
    c = await d.client()
    first = await start_claude(c, claude_home, gateway)
    await c.close()
    crash(d, first, gateway["ANTHROPIC_AUTH_TOKEN"])
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c2 = await d2.client()
    assert (await c2.get(first.id)).state == "running"
    gated_api.release.set()
    retry = None
    async for ev in c2.follow(first.id):
        if isinstance(ev, JobRetry):
            retry = ev
        if isinstance(ev, JobFinished):
            assert ev.job.claude is not None and ev.job.claude.error_class == "usage_limit"
    assert retry is not None and retry.error_class == "usage_limit"
    assert retry.wait_until == pytest.approx(resets + 0.5, abs=0.01)
    # The adopting daemon blocks its other Claude jobs until the same reset.
    other = await c2.start(None, kind="claude", prompt="hi", model=MODEL, cwd=str(claude_home), env=gateway)
    assert other.state == "queued" and other.wait_reason == "usage limit"
    assert other.wait_until == pytest.approx(resets + 0.5, abs=0.01)
    for job_id in (retry.next_job_id, other.id):
        done = [ev.job async for ev in c2.follow(job_id) if isinstance(ev, JobFinished)]
        assert done[0].exit_code == 0 and (done[0].started_at or 0) >= resets
    assert (await c2.get(retry.next_job_id)).retry_of == first.id
    assert len(gated_api.answered_at) == 2  # one answer per job, both after the reset
    await c2.close()


async def test_a_shell_string_claude_job_adopted_after_a_crash_keeps_its_text_and_its_retry(
    daemon_factory: Any, claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    # `claude -p ...` in a shell string prints text, rendered from the stream-json it writes to a file.
    cli_dir = claude_home / "bin"
    cli_dir.mkdir()
    (cli_dir / "claude").symlink_to(os.path.realpath(claude_bin))
    fake_api.script(Hang())
    fake_api.default = Stream(text="after the stall")
    d = start_daemon(daemon_factory, claude_bin, fake_api, claude_home, path=cli_dir)
    c = await d.client()
    command = f"claude -p 'say hello' --model {MODEL}"
    env = {"ANTHROPIC_API_KEY": KEY}
    first = await c.start(command, cwd=str(claude_home), env=env, stall_timeout=4, subscribe=True)
    while fake_api.messages == []:  # the CLI is waiting on the answer that never ends
        await asyncio.sleep(0.05)
    argv = (await c.get(first.id)).argv
    await c.close()
    crash(d, first, KEY)
    d2 = daemon_factory(extra_env=d.env, root=claude_home / "ccxd")
    c2 = await d2.client()
    adopted = await c2.get(first.id)
    assert adopted.state == "running" and adopted.argv == argv
    events = await asyncio.wait_for(collect(chain(c2, first.id)), 60)
    stalled, second = [ev.job for ev in events if isinstance(ev, JobFinished)]
    assert stalled.reason == "idle_timeout" and stalled.claude is not None
    assert stalled.claude.error_class == "stall" and stalled.claude.session_id is not None
    assert (second.retry_of, second.exit_code) == (first.id, 0)
    out = await c2.read(second.id)
    assert "".join(ch.data for ch in out.chunks) == "after the stall\n"
    assert keys_sent(fake_api) == [KEY, KEY]
    await c2.close()
