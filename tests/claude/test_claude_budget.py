"""Cost budgets for Claude jobs: the real CLI under a real daemon, against the fake API.

The fake's token counts set the cost: the CLI prices them itself (100 000 input
and 1 000 output tokens of the default model cost about $0.42).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from msgspec import structs

from ccxd.protocol import JobFinished, JobInfo, StartParams
from tests.claude.fake_api import FakeApi, Stream
from tests.claude.test_claude_jobs import claude_params
from tests.claude.test_claude_retry import chain
from tests.claude.test_claude_shell_jobs import ccxctl, start_daemon

pytestmark = pytest.mark.timeout(240)

DEAR = Stream(text="An expensive answer.", input_tokens=100_000, output_tokens=1_000)


@pytest.fixture
def cli_dir(claude_bin: str, claude_home: Path) -> Path:
    """A PATH directory whose ``claude`` is the pinned CLI."""
    import os

    d = claude_home / "bin"
    d.mkdir()
    (d / "claude").symlink_to(os.path.realpath(claude_bin))
    return d


def claude_job(api: FakeApi, home: Path, cli_dir: Path, **kw: Any) -> StartParams:
    """A ``kind: "claude"`` job whose ``claude`` is the pinned CLI."""
    params = claude_params(api, home, **kw)
    params.env["PATH"] = f"{cli_dir}:{params.env['PATH']}"
    return params


async def finals(d: Any, params: StartParams) -> list[JobInfo]:
    """Start ``params`` and follow it and any retries to the end: the final records."""
    c = await d.client()
    try:
        job = await c.call("job.start", structs.replace(params, subscribe=True), follow=True)
        return [ev.job async for ev in chain(c, job.id) if isinstance(ev, JobFinished)]
    finally:
        await c.close()


# -- per job -------------------------------------------------------------------------


async def test_claude_job_over_its_budget_ends_budget_exceeded_and_is_not_retried(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR, DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)  # retries on
    (job,) = await finals(d, claude_job(fake_api, claude_home, cli_dir, max_budget_usd=0.01))
    # The CLI's own flag stopped it; ccxd names the outcome.
    assert job.argv[job.argv.index("--max-budget-usd") + 1] == "0.01"
    assert job.reason == "budget_exceeded" and job.retried_by is None
    assert job.claude is not None and job.claude.error_class == "max_budget"
    assert job.claude.cost_usd is not None and job.claude.cost_usd > 0.01
    assert len(fake_api.messages) == 1
    ps = ccxctl(d, "ps", "-a")
    assert job.id in ps.stdout.decode() and "budget_exceeded" in ps.stdout.decode(), ps
    # ccxctl claude --max-budget-usd says so and fails.
    fake_api.script(DEAR)
    res = ccxctl(d, "claude", "--cwd", str(claude_home), "--max-budget-usd", "0.01", "hi")
    assert res.returncode == 1 and b"budget_exceeded" in res.stderr, res


async def test_shell_claude_job_without_the_flag_is_held_to_its_budget_by_ccxd(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(DEAR)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    command = "claude -p hi --output-format stream-json --verbose"
    (job,) = await finals(d, StartParams(command=command, cwd=str(claude_home), max_budget_usd=0.05))
    # The CLI answered without knowing the budget; the cost it reported passed it.
    assert "--max-budget-usd" not in job.argv[-1]
    assert job.reason == "budget_exceeded" and job.retried_by is None
    assert job.claude is not None and job.claude.error_class == "max_budget"
    assert "passed the budget $0.05" in (job.claude.error or "")
