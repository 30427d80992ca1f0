"""Claude Code as ccxd jobs: the real CLI under a real daemon, against the fake API."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from msgspec import structs

from ccxd.protocol import ClaudeEventNote, HistoryParams, JobFinished, JobInfo, OutputChunk, StartParams
from ccxd.protocol.claude_events import Assistant, Init, Result, StreamEvent
from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Hang, Stream, ToolUse, UsageLimit, overloaded, rate_limited

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def claude_daemon(daemon_factory, claude_bin: str):  # type: ignore[no-untyped-def]
    # Retries are part B's business (tests/claude/test_claude_retry*.py); here each run stands alone.
    return daemon_factory({"CCXD_CLAUDE_PROGRAM": claude_bin, "CCXD_CLAUDE_RETRY": "false"})


async def run_claude(daemon, params: StartParams) -> tuple[JobInfo, list[Any], bytes]:  # type: ignore[no-untyped-def]
    client = await daemon.client()
    try:
        info: JobInfo = await client.call("job.start", structs.replace(params, subscribe=True), follow=True)
        events: list[Any] = []
        out = bytearray()
        finished = None
        async for ev in client.events(info.id):
            events.append(ev)
            if isinstance(ev, OutputChunk) and ev.stream == "stdout":
                out += ev.raw()
            if isinstance(ev, JobFinished):
                finished = ev.job
        assert finished is not None
        return finished, events, bytes(out)
    finally:
        await client.close()


def claude_params(api: FakeApi, home: Path, **kw: Any) -> StartParams:
    return StartParams(
        kind="claude",
        prompt=kw.pop("prompt", "write a long story"),
        cwd=str(home),
        env=claude_env(api, home),
        **kw,
    )


async def test_success_records_session_cost_tokens_and_events(claude_daemon, fake_api, claude_home) -> None:
    text = "".join(f"Paragraph {i}. " + "words " * 40 + "\n" for i in range(400))
    fake_api.script(Stream(text=text, piece=500, input_tokens=1234, output_tokens=5678))
    job, events, out = await run_claude(
        claude_daemon, claude_params(fake_api, claude_home, model="claude-sonnet-4-5")
    )
    c = job.claude
    assert c is not None and c.error_class is None and c.ok is True
    assert job.reason == "exited" and job.exit_code == 0
    # The pre-assigned session id is on the command line and read back from the CLI.
    assert "--session-id" in job.argv and job.argv[job.argv.index("--session-id") + 1] == c.session_id
    assert fake_api.messages[0].headers["X-Claude-Code-Session-Id"] == c.session_id
    assert job.argv[-2:] == ["--", "write a long story"] and job.cwd == str(claude_home)
    assert (c.input_tokens, c.output_tokens, c.turns) == (1234, 5678, 1)
    assert c.cost_usd and c.cost_usd > 0
    assert c.result is not None and c.result.strip() == text.strip()
    assert c.model == "claude-sonnet-4-5"
    notes = [e for e in events if isinstance(e, ClaudeEventNote)]
    kinds = [type(n.event) for n in notes]
    assert kinds[0] is Init and kinds[-1] is Result
    assert [n.seq for n in notes] == list(range(len(notes)))
    # Each event comes right after the output that holds its line: never ahead of it.
    for note in notes:
        sent_before = sum(len(e.raw()) for e in events[: events.index(note)] if isinstance(e, OutputChunk))
        assert note.offset <= sent_before
    assert out.count(b"\n") >= len(notes)
    # The stored record is the same (history).
    client = await claude_daemon.client()
    try:
        stored = await client.get(job.id)
    finally:
        await client.close()
    assert stored.claude is not None and stored.claude.session_id == c.session_id


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([rate_limited(1), rate_limited(1)], "rate_limit"),
        ([overloaded(), overloaded()], "overloaded"),
        ([Stream(text="cut", stop_reason="max_tokens", output_tokens=64000)] * 6, "token_limit"),
    ],
)
async def test_failures_are_classified_in_the_job_record(
    claude_daemon, fake_api, claude_home, script: list[Any], expected: str
) -> None:
    fake_api.script(*script)
    job, _, _ = await run_claude(claude_daemon, claude_params(fake_api, claude_home))
    assert job.claude is not None and job.claude.error_class == expected, job.claude
    assert job.claude.ok is False and job.claude.error


async def test_429_then_success_is_a_success_with_the_cli_retry_counted(
    claude_daemon, fake_api, claude_home
) -> None:
    fake_api.script(rate_limited(1), Stream(text="fine after all"))
    job, _, _ = await run_claude(claude_daemon, claude_params(fake_api, claude_home))
    assert job.claude is not None and job.claude.error_class is None
    assert (job.claude.result, job.claude.api_retries) == ("fine after all", 1)


async def test_usage_limit_has_its_reset_time(claude_daemon, fake_api, claude_home) -> None:
    resets = int(time.time()) + 7200
    fake_api.script(UsageLimit(resets_at=resets))
    params = claude_params(fake_api, claude_home)
    params.env.update(claude_env(fake_api, claude_home, gateway=True))
    params.env.pop("ANTHROPIC_API_KEY", None)
    job, _, _ = await run_claude(claude_daemon, params)
    assert job.claude is not None and (job.claude.error_class, job.claude.reset_at) == ("usage_limit", resets)


async def test_hung_stream_is_a_stall_and_the_job_ends(claude_daemon, fake_api, claude_home) -> None:
    fake_api.script(Hang())
    started = time.monotonic()
    job, _, _ = await run_claude(claude_daemon, claude_params(fake_api, claude_home, stall_timeout=3))
    assert job.claude is not None and job.claude.error_class == "stall"
    assert job.reason == "idle_timeout"
    assert time.monotonic() - started < 60
    from tests.helpers import job_pids

    assert job_pids(job.id) == []


async def test_an_argv_job_running_claude_is_a_claude_job(
    claude_daemon, fake_api, claude_home, claude_bin
) -> None:
    fake_api.script(Stream(text="from an argv"))
    params = StartParams(
        command=[claude_bin, "-p", "hi", "--output-format", "stream-json", "--verbose"],
        cwd=str(claude_home),
        env=claude_env(fake_api, claude_home),
    )
    job, _, _ = await run_claude(claude_daemon, params)
    assert job.claude is not None and job.claude.result == "from an argv"
    assert job.argv[1] == "--session-id" and job.claude.session_id == job.argv[2]


async def test_process_alive_after_its_result_is_ended(daemon_factory, tmp_root) -> None:
    # The real CLI exits after its result; its known hang is played by a script named claude.
    fake = tmp_root / "bin" / "claude"
    fake.parent.mkdir()
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s"}
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(result)}'\nexec sleep 300\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    d = daemon_factory({"CCXD_CLAUDE_EXIT_GRACE": "1", "CCXD_CLAUDE_RETRY": "false"})
    job, _, _ = await run_claude(
        d, StartParams(command=[str(fake), "-p", "x", "--output-format", "stream-json"])
    )
    assert job.claude is not None
    assert (job.claude.error_class, job.claude.ok, job.claude.result) == ("hung_after_result", True, "done")
    assert job.reason == "exited"


def test_ccxctl_claude_prints_the_plain_result(daemon_factory, claude_bin, fake_api, claude_home) -> None:
    fake_api.script(Stream(text="The answer is 42."))
    # ccxctl claude adds no environment: the daemon's (here: the fake API's) is the job's.
    d = daemon_factory(
        {"CCXD_CLAUDE_PROGRAM": claude_bin, "CCXD_CLAUDE_RETRY": "false", **claude_env(fake_api, claude_home)}
    )
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccxctl",
            "claude",
            "what is it?",
            "--model",
            "claude-haiku-4-5",
            "--max-turns",
            "3",
            "--allowed-tools",
            "Read",
            "--cwd",
            str(claude_home),
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"The answer is 42.\n"
    body = fake_api.messages[0].body or {}
    assert body.get("model") == "claude-haiku-4-5"
    hist = subprocess.run(
        [sys.executable, "-m", "ccxctl", "history", "list"], env=env, capture_output=True, timeout=60
    )
    assert hist.returncode == 0, hist.stderr
    header, row = hist.stdout.decode().splitlines()[:2]
    assert "cost" in header and "tokens in/out" in header
    assert "$0." in row and "claude" in row
    stats = subprocess.run(
        [sys.executable, "-m", "ccxctl", "history", "stats", "--claude", "--json"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    usage = json.loads(stats.stdout)
    assert [r["jobs"] for r in usage["days"]] == [1] and usage["days"][0]["cost_usd"] > 0
    assert len(usage["sessions"]) == 1 and usage["sessions"][0]["output_tokens"] > 0


async def test_partial_messages_and_tool_use_reach_subscribers(claude_daemon, fake_api, claude_home) -> None:
    fake_api.script(
        ToolUse(name="Read", input={"file_path": "notes.txt"}), Stream(text="one two three", piece=4)
    )
    (claude_home / "notes.txt").write_text("hello\n")
    params = claude_params(fake_api, claude_home, include_partial_messages=True, allowed_tools=["Read"])
    job, events, _ = await run_claude(claude_daemon, params)
    assert "--include-partial-messages" in job.argv
    notes = [e.event for e in events if isinstance(e, ClaudeEventNote)]
    deltas = [
        ev.event["delta"]["text"]
        for ev in notes
        if isinstance(ev, StreamEvent)
        and ev.event.get("type") == "content_block_delta"
        and ev.event["delta"].get("type") == "text_delta"
    ]
    assert "".join(deltas).endswith("one two three")
    uses = [t for ev in notes if isinstance(ev, Assistant) for t in ev.tool_uses]
    assert [(t.name, t.input) for t in uses] == [("Read", {"file_path": "notes.txt"})]
    assert job.claude is not None and job.claude.result == "one two three" and job.claude.turns == 2


async def test_api_key_only_from_the_config_file(
    daemon_factory, claude_bin, fake_api, claude_home, tmp_root
) -> None:
    key_file = tmp_root / "claude.key"
    key_file.write_text("sk-ant-from-config\n")
    d = daemon_factory(
        {
            "CCXD_CLAUDE_PROGRAM": claude_bin,
            "CCXD_CLAUDE_RETRY": "false",
            "CCXD_CLAUDE_API_KEY_FILE": str(key_file),
        }
    )
    env = claude_env(fake_api, claude_home)
    del env["ANTHROPIC_API_KEY"]
    job, _, _ = await run_claude(d, StartParams(kind="claude", prompt="hi", cwd=str(claude_home), env=env))
    assert job.claude is not None and job.claude.error_class is None
    assert fake_api.messages[0].headers["x-api-key"] == "sk-ant-from-config"
    assert "ANTHROPIC_API_KEY" not in job.env and not any("sk-ant" in a for a in job.argv)


async def test_claude_fields_survive_a_daemon_restart(
    daemon_factory, claude_bin, fake_api, claude_home
) -> None:
    env = {"CCXD_CLAUDE_PROGRAM": claude_bin, "CCXD_CLAUDE_RETRY": "false"}
    first = daemon_factory(env)
    fake_api.script(Stream(text="kept for later", input_tokens=77, output_tokens=88))
    job, _, _ = await run_claude(first, claude_params(fake_api, claude_home, session="history-test"))
    first.stop()
    second = daemon_factory(env, root=first.root)
    client = await second.client()
    try:
        stored = await client.get(job.id)
        listed = await client.call("history.list", HistoryParams(session="history-test"))
    finally:
        await client.close()
    for record in (stored, listed.jobs[0]):
        c = record.claude
        assert c is not None and c.session_id == job.claude.session_id  # type: ignore[union-attr]
        assert (c.result, c.input_tokens, c.output_tokens, c.ok) == ("kept for later", 77, 88, True)
        assert record.argv == job.argv and record.cwd == str(claude_home)


async def test_resume_runs_in_the_session_with_its_history(claude_daemon, fake_api, claude_home) -> None:
    fake_api.script(Stream(text="first answer"), Stream(text="second answer"))
    first, _, _ = await run_claude(
        claude_daemon, claude_params(fake_api, claude_home, prompt="remember the word apple")
    )
    assert first.claude is not None and first.claude.session_id
    second, _, _ = await run_claude(
        claude_daemon,
        claude_params(fake_api, claude_home, prompt="which word?", resume=first.claude.session_id),
    )
    assert second.claude is not None and second.claude.error_class is None
    assert "--resume" in second.argv and "--session-id" not in second.argv
    # The CLI sent the earlier turn along: the session really was resumed.
    sent = json.dumps(fake_api.messages[-1].body)
    assert "remember the word apple" in sent and "first answer" in sent and "which word?" in sent
    assert second.claude.session_id  # read back from the CLI (a resume may fork a new id)


def test_ccxctl_claude_without_the_cli_says_so_and_fails(daemon_factory, tmp_path) -> None:
    # A machine without Claude Code: the job cannot start, and the user hears it.
    d = daemon_factory({"CCXD_CLAUDE_PROGRAM": str(tmp_path / "no" / "claude")})
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    res = subprocess.run(
        [sys.executable, "-m", "ccxctl", "claude", "hi"], env=env, capture_output=True, timeout=120
    )
    assert res.returncode == 127 and res.stdout == b""
    [line] = res.stderr.decode().splitlines()
    assert "could not start" in line and "claude_program" in line
    stats = subprocess.run(
        [sys.executable, "-m", "ccxctl", "history", "stats", "--claude", "--json"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    [day] = json.loads(stats.stdout)["days"]
    assert (day["jobs"], day["failed"]) == (1, 1)
