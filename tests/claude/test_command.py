"""Building a Claude job's argv (no shell), session ids, and usage sums."""

from __future__ import annotations

import uuid

import pytest

from ccxd.claude.command import add_budget, add_session_id, build_argv, claude_params, wants_events
from ccxd.claude.usage import by_day, by_session
from ccxd.protocol import ClaudeInfo, JobInfo, JobReason, JobState, StartParams


def test_argv_from_members_with_the_prompt_last_after_a_double_dash() -> None:
    p = StartParams(
        kind="claude",
        prompt="-rf? $(rm) 'quotes' \"and\" spaces",
        model="claude-sonnet-4-5",
        max_turns=3,
        allowed_tools=["Read", "Bash(git log:*)"],
        mcp_config="/etc/mcp.json",
        resume="abc",
        include_partial_messages=True,
        claude_args=["--add-dir", "/data"],
    )
    argv = build_argv(p, "claude", skip_permissions=False)
    assert argv == [
        "claude", "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
        "--model", "claude-sonnet-4-5", "--max-turns", "3", "--resume", "abc", "--add-dir", "/data",
        "--mcp-config", "/etc/mcp.json", "--allowedTools", "Read", "Bash(git log:*)",
        "--", "-rf? $(rm) 'quotes' \"and\" spaces",
    ]  # fmt: skip


def test_skip_permissions_only_when_asked() -> None:
    base = StartParams(kind="claude", prompt="x")
    assert "--dangerously-skip-permissions" not in build_argv(base, "claude", False)
    assert "--dangerously-skip-permissions" in build_argv(base, "claude", True)
    no = StartParams(kind="claude", prompt="x", skip_permissions=False)
    assert "--dangerously-skip-permissions" not in build_argv(no, "claude", True)


def test_prompt_on_stdin_and_validation() -> None:
    p = claude_params(StartParams(kind="claude", prompt="long prompt", prompt_on_stdin=True), "claude", False)
    assert p.input == "long prompt" and p.command is not None and "long prompt" not in p.command
    with pytest.raises(ValueError, match="needs a prompt"):
        claude_params(StartParams(kind="claude"), "claude", False)
    with pytest.raises(ValueError, match="command is required"):
        claude_params(StartParams(), "claude", False)
    with pytest.raises(ValueError, match="stream-json"):
        claude_params(
            StartParams(kind="claude", prompt="x", output_format="text", include_partial_messages=True),
            "claude",
            False,
        )
    huge = "word " * 50_000  # over what one argument may hold
    p = claude_params(StartParams(kind="claude", prompt=huge), "claude", False)
    assert p.input == huge and p.command is not None and huge not in p.command and p.prompt_on_stdin
    shell = StartParams(command="echo hi")
    assert claude_params(shell, "claude", False) is shell


def test_session_id_is_pre_assigned_unless_resuming() -> None:
    argv, sid = add_session_id(["claude", "-p", "hi"])
    assert sid is not None and uuid.UUID(sid) and argv == ["claude", "--session-id", sid, "-p", "hi"]
    for resuming in (["--resume", "x"], ["-c"], ["--session-id", "mine"]):
        same, got = add_session_id(["claude", "-p", *resuming, "hi"])
        assert same == ["claude", "-p", *resuming, "hi"]
        assert got == ("mine" if "mine" in resuming else None)
    assert add_session_id(["claude", "doctor"]) == (["claude", "doctor"], None)  # not headless


def test_wants_events() -> None:
    assert wants_events(["claude", "-p", "--output-format", "stream-json"])
    assert wants_events(["claude", "-p", "--output-format=stream-json"])
    assert not wants_events(["claude", "-p", "--output-format", "json"])


def _job(
    day: float, session: str | None, cost: float, tin: int, tout: int, err: str | None = None
) -> JobInfo:
    c = ClaudeInfo(
        session_id=session, cost_usd=cost, input_tokens=tin, output_tokens=tout, turns=1, error_class=err
    )
    return JobInfo(
        id=str(day),
        state=JobState.FINISHED,
        command=["claude"],
        queued_at=day,
        claude=c,
        reason=JobReason.EXITED,
        exit_code=1 if err else 0,
    )


def test_usage_per_day_and_session() -> None:
    day1, day2 = 1795600000.0, 1795600000.0 + 86400
    jobs = [
        _job(day1, "a", 0.5, 10, 20),
        _job(day1 + 60, "b", 0.25, 1, 2, "rate_limit"),
        _job(day2, "a", 1.0, 5, 5),
    ]
    jobs.append(JobInfo(id="shell", state=JobState.FINISHED, command="ls", queued_at=day1))
    # No `claude` program: the CLI never ran, so nothing classified it, but it failed.
    jobs.append(
        JobInfo(
            id="nocli",
            state=JobState.FINISHED,
            command=["claude"],
            queued_at=day2 + 60,
            claude=ClaudeInfo(),
            reason=JobReason.FAILED_TO_START,
        )
    )
    days = by_day(jobs, utc=True)
    assert [(d.jobs, d.failed, d.cost_usd, d.input_tokens, d.output_tokens) for d in days] == [
        (2, 1, 0.75, 11, 22),
        (2, 1, 1.0, 5, 5),
    ]
    sessions = {s.key: (s.jobs, s.cost_usd, s.turns) for s in by_session(jobs)}
    assert sessions == {"a": (2, 1.5, 2), "b": (1, 0.25, 1), "-": (1, 0.0, 0)}


def test_budget_goes_on_the_command_line_once() -> None:
    p = StartParams(kind="claude", prompt="hi", max_budget_usd=0.25)
    argv = build_argv(p, "claude", skip_permissions=False)
    assert argv[argv.index("--max-budget-usd") + 1] == "0.25"
    assert add_budget(["claude", "-p", "hi"], 0.5) == ["claude", "--max-budget-usd", "0.5", "-p", "hi"]
    own = ["claude", "-p", "--max-budget-usd=2", "hi"]
    assert add_budget(own, 0.5) == own and add_budget(["claude", "-p"], None) == ["claude", "-p"]
