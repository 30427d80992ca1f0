"""cc_executor clients running ``claude`` through ``execute`` get its error.* notifications."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Stream, UsageLimit, rate_limited
from tests.compat.test_cc_executor import LEGACY_ENV, Legacy

pytestmark = pytest.mark.timeout(240)


def command(claude_bin: str, env: dict[str, str]) -> str:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"env {exports} {shlex.quote(claude_bin)} -p 'tell me' --output-format stream-json --verbose"


async def run(daemon, cmd: str) -> list[dict]:  # type: ignore[no-untyped-def]
    c = await Legacy.open(daemon)
    try:
        assert (await c.next())["method"] == "connected"
        reply = await c.call("execute", {"command": cmd})
        assert "result" in reply, reply
        seen = []
        while True:
            msg = await c.next()
            seen.append(msg)
            if msg["method"] in ("process.completed", "process.failed"):
                return seen
    finally:
        await c.ws.close()


@pytest.fixture
def legacy_claude(daemon_factory):  # type: ignore[no-untyped-def]
    return daemon_factory(dict(LEGACY_ENV, CCXD_CLAUDE_RETRY="false"))


async def test_token_limit_notification(
    legacy_claude, claude_bin, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.default = Stream(text="cut", stop_reason="max_tokens", output_tokens=64000)
    seen = await run(legacy_claude, command(claude_bin, claude_env(fake_api, claude_home)))
    errors = [m for m in seen if m["method"].startswith("error.")]
    assert [m["method"] for m in errors] == ["error.token_limit_exceeded"]
    p = errors[0]["params"]
    assert p["error_type"] == "token_limit" and p["limit"] > 0 and p["job_id"]
    assert "output token maximum" in p["message"]
    assert not p.get("recoverable")  # retries are off in this daemon
    assert seen[-1]["method"] == "process.completed"


async def test_rate_limit_and_usage_limit_notifications(
    legacy_claude, claude_bin, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.script(rate_limited(2), rate_limited(2))
    seen = await run(legacy_claude, command(claude_bin, claude_env(fake_api, claude_home)))
    [err] = [m["params"] for m in seen if m["method"] == "error.rate_limit_exceeded"]
    assert err["error_type"] == "rate_limit_429" and "429" in err["error_text"]

    resets = int(time.time()) + 3600
    fake_api.script(UsageLimit(resets_at=resets))
    env = claude_env(fake_api, claude_home, gateway=True)
    seen = await run(legacy_claude, command(claude_bin, env))
    [err] = [m["params"] for m in seen if m["method"] == "error.rate_limit_exceeded"]
    assert (err["error_type"], err["reset_timestamp"]) == ("usage_limit", resets)
    assert json.dumps(err)  # plain JSON for old clients
