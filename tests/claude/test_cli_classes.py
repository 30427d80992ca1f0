"""The real CLI against the fake API: its stream-json parses and classifies as documented.

These run the CLI directly (no daemon) to pin down the parser and classifier
on real output; tests/claude/test_claude_jobs.py runs it as ccxd jobs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ccxd.claude.classify import Classification, RunFacts, classify
from ccxd.claude.stream import StreamJsonParser
from ccxd.protocol.claude_events import ApiRetry, Assistant, ClaudeEvent, Init, RateLimit, Result
from tests.claude.cli import claude_env
from tests.claude.fake_api import (
    ApiError,
    FakeApi,
    Stream,
    ToolUse,
    UsageLimit,
    invalid_key,
    overloaded,
    rate_limited,
)


def run_cli(
    claude_bin: str,
    api: FakeApi,
    home: Path,
    *,
    gateway: bool = False,
    chunk: int = 4096,
    args: tuple[str, ...] = (),
) -> tuple[list[ClaudeEvent], Classification, int]:
    proc = subprocess.run(
        [claude_bin, "-p", "say hello", "--output-format", "stream-json", "--verbose", *args],
        env=claude_env(api, home, gateway=gateway),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        cwd=home,
    )
    parser = StreamJsonParser()
    events: list[ClaudeEvent] = []
    for i in range(0, len(proc.stdout), chunk):
        events += parser.feed(proc.stdout[i : i + chunk])
    events += parser.flush()
    facts = RunFacts()
    for ev in events:
        facts.observe(ev)
    return (
        events,
        classify(facts, stderr_tail=proc.stderr.decode(errors="replace"), now=time.time()),
        proc.returncode,
    )


def test_long_streamed_answer_succeeds(claude_bin: str, fake_api: FakeApi, claude_home: Path) -> None:
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(3000))
    fake_api.script(Stream(text=text, piece=100, input_tokens=321, output_tokens=4567))
    events, cls, code = run_cli(claude_bin, fake_api, claude_home, chunk=777)
    assert cls.error_class is None and code == 0
    init = events[0]
    assert isinstance(init, Init) and init.session_id
    result = events[-1]
    assert isinstance(result, Result)
    assert result.result == text.rstrip("\n") or result.result == text
    assert result.session_id == init.session_id
    assert (
        result.usage is not None and result.usage.input_tokens == 321 and result.usage.output_tokens == 4567
    )
    assert result.num_turns == 1 and (result.total_cost_usd or 0) > 0
    assert fake_api.messages[0].headers.get("X-Claude-Code-Session-Id") == init.session_id


def test_429_then_success_is_success_with_a_retry(
    claude_bin: str, fake_api: FakeApi, claude_home: Path
) -> None:
    fake_api.script(rate_limited(1), Stream(text="after the retry"))
    events, cls, code = run_cli(claude_bin, fake_api, claude_home)
    assert cls.error_class is None and code == 0
    retries = [e for e in events if isinstance(e, ApiRetry)]
    assert [(r.attempt, r.error_status) for r in retries] == [(1, 429)]
    assert isinstance(events[-1], Result) and events[-1].result == "after the retry"


@pytest.mark.parametrize(
    ("reply", "expected", "status"),
    [
        (rate_limited(1), "rate_limit", 429),
        (overloaded(), "overloaded", 529),
        (invalid_key(), "auth", 401),
        (
            ApiError(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
            "context_full",
            400,
        ),
        (ApiError(500, "api_error", "Internal server error"), "api_error", 500),
    ],
)
def test_api_failures_are_classified(
    claude_bin: str, fake_api: FakeApi, claude_home: Path, reply: ApiError, expected: str, status: int
) -> None:
    fake_api.default = reply
    events, cls, code = run_cli(claude_bin, fake_api, claude_home)
    result = events[-1]
    # The CLI reports API errors as subtype "success" with is_error: only both together tell.
    assert isinstance(result, Result) and result.is_error and result.subtype == "success"
    assert cls.error_class == expected, cls
    assert cls.status == status
    assert cls.message


def test_output_token_limit(claude_bin: str, fake_api: FakeApi, claude_home: Path) -> None:
    fake_api.default = Stream(text="cut off", stop_reason="max_tokens", output_tokens=32000)
    events, cls, _ = run_cli(claude_bin, fake_api, claude_home)
    assert cls.error_class == "token_limit"
    assert isinstance(cls.limit, int) and cls.limit > 0
    assert "output token maximum" in (cls.message or "")
    # The CLI first asked the model to continue by itself, several times.
    assert len(fake_api.messages) > 1


def test_usage_limit_with_reset_time(claude_bin: str, fake_api: FakeApi, claude_home: Path) -> None:
    resets = int(time.time()) + 3 * 3600
    fake_api.script(UsageLimit(resets_at=resets))
    events, cls, _ = run_cli(claude_bin, fake_api, claude_home, gateway=True)
    assert any(isinstance(e, RateLimit) and e.rate_limit_info.status == "rejected" for e in events)
    assert cls.error_class == "usage_limit"
    assert cls.reset_at == resets and cls.limit_type == "five_hour"
    assert len(fake_api.messages) == 1  # not retried


def test_unreachable_api_is_network(claude_bin: str, claude_home: Path) -> None:
    api = FakeApi()  # never started: its port refuses connections
    api.stop()
    events, cls, _ = run_cli(claude_bin, api, claude_home)
    assert cls.error_class == "network", cls
    assert any(isinstance(e, Assistant) and e.is_api_error_message for e in events)


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (("--max-turns", "1"), "max_turns", "maximum number of turns"),
        (("--max-budget-usd", "0.00001"), "max_budget", "maximum budget"),
    ],
)
def test_turn_and_budget_limits(
    claude_bin: str, fake_api: FakeApi, claude_home: Path, args: tuple[str, ...], expected: str, words: str
) -> None:
    fake_api.script(ToolUse(input={"file_path": "notes.txt"}), Stream(text="never reached"))
    events, cls, code = run_cli(claude_bin, fake_api, claude_home, args=args)
    assert cls.error_class == expected and code != 0
    assert words in (cls.message or "")
    tool_uses = [t for e in events if isinstance(e, Assistant) for t in e.tool_uses]
    assert [(t.name, t.input) for t in tool_uses] == [("Read", {"file_path": "notes.txt"})]
