"""A shell string that runs ``claude -p`` is a Claude job: real zsh, the real CLI, the fake API.

``ccxctl run 'claude -p hi'`` must print what ``claude -p hi`` prints, and be
watched, retried, gated and accounted like ``ccxctl claude hi``; pipelines
and ``kind: "shell"`` stay plain shell jobs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccxd.protocol import ClaudeEventNote, JobFinished, JobInfo, JobRetry, OutputChunk, RetryParams
from ccxd.protocol.claude_events import Init, Result
from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Hang, Stream, ToolUse
from tests.claude.test_claude_retry import chain

pytestmark = pytest.mark.timeout(240)

MODEL = "claude-sonnet-4-5"  # default 32000 output tokens, maximum 64000


@pytest.fixture
def cli_dir(claude_bin: str, claude_home: Path) -> Path:
    """A PATH directory whose ``claude`` is the pinned CLI (as a user's install would be)."""
    d = claude_home / "bin"
    d.mkdir()
    (d / "claude").symlink_to(os.path.realpath(claude_bin))
    return d


def start_daemon(daemon_factory: Any, api: FakeApi, home: Path, cli_dir: Path, **config: str) -> Any:
    env = claude_env(api, home)
    env["PATH"] = f"{cli_dir}:{env['PATH']}"
    env.update({f"CCXD_{k.upper()}": v for k, v in config.items()})
    return daemon_factory(extra_env=env, root=home / "ccxd")


def ccxctl(d: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(d.env, CCXD_SOCKET=str(d.socket))
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, timeout=timeout, check=False
    )


def real_cli(api: FakeApi, home: Path, cli_dir: Path, command: str) -> subprocess.CompletedProcess[bytes]:
    """``command`` run by zsh itself, outside ccxd: what the user would see without ccxd."""
    env = claude_env(api, home)
    env["PATH"] = f"{cli_dir}:{env['PATH']}"
    return subprocess.run(
        ["zsh", "-c", command], env=env, cwd=home, capture_output=True, timeout=120, check=False
    )


async def finals_of(c: Any, job_id: str) -> tuple[list[Any], list[JobInfo]]:
    events = [ev async for ev in chain(c, job_id)]
    return events, [ev.job for ev in events if isinstance(ev, JobFinished)]


def stdout_of(events: list[Any], job_id: str) -> bytes:
    return b"".join(
        ev.raw()
        for ev in events
        if isinstance(ev, OutputChunk) and ev.stream == "stdout" and ev.job_id == job_id
    )


# -- what the user sees --------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        ([Stream(text="line one\n\n  line two  ")], 0),
        ([Stream(text="cut", stop_reason="max_tokens")] * 4, 1),  # an error result, exit 1
        ([ToolUse()], 1),  # --max-turns 1: "Error: Reached max turns (1)", no newline
    ],
    ids=["answer", "token_limit_error", "max_turns"],
)
async def test_ccxctl_run_prints_what_the_cli_prints_in_text_mode(
    daemon_factory: Any,
    fake_api: FakeApi,
    claude_home: Path,
    cli_dir: Path,
    answers: list[Any],
    code: int,
) -> None:
    command = "claude -p 'say hi' --max-turns 1"
    fake_api.script(*answers)
    expected = real_cli(fake_api, claude_home, cli_dir, command)
    assert expected.returncode == code
    fake_api.script(*answers)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir, claude_retry="false")
    res = ccxctl(d, "run", "--cwd", str(claude_home), "--", command)
    assert res.stdout == expected.stdout
    assert res.returncode == code, res.stderr
    # ... and it ran as a watched Claude job, its stream-json behind the text.
    c = await d.client()
    (job,) = await c.list()
    assert job.claude is not None and job.claude.events > 0 and job.claude.session_id
    assert job.command == command and "textview.py" in job.argv[-1]
    await c.close()


@pytest.mark.parametrize("job_shim", ["true", "false"])
async def test_text_job_is_watched_and_keeps_both_text_and_events(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path, job_shim: str
) -> None:
    fake_api.script(Stream(text="Four.", input_tokens=321, output_tokens=7))
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir, job_shim=job_shim)
    c = await d.client()
    command = f"claude -p 'What is 2+2?' --model {MODEL}"
    job = await c.start(command, subscribe=True, cwd=str(claude_home))
    events = [ev async for ev in c.events(job.id)]
    final = next(ev.job for ev in events if isinstance(ev, JobFinished))
    assert stdout_of(events, job.id) == b"Four.\n"
    assert final.command == command  # the request is the user's, byte for byte
    info = final.claude
    assert info is not None and info.ok is True and info.result == "Four."
    assert (info.input_tokens, info.output_tokens) == (321, 7) and info.cost_usd
    assert info.session_id == fake_api.messages[0].headers["X-Claude-Code-Session-Id"]
    notes = [ev for ev in events if isinstance(ev, ClaudeEventNote)]
    assert notes and isinstance(notes[0].event, Init) and isinstance(notes[-1].event, Result)
    # The stream-json is kept next to the text output.
    kept = list(d.root.rglob(f"{job.id}.claude"))
    assert kept and b'"type":"result"' in kept[0].read_bytes()
    # history stats --claude counts its cost and tokens.
    stats = ccxctl(d, "history", "stats", "--claude", "--json")
    assert stats.returncode == 0, stats.stderr
    (day,) = json.loads(stats.stdout)["days"]
    assert (day["jobs"], day["input_tokens"], day["output_tokens"]) == (1, 321, 7)
    assert day["cost_usd"] == pytest.approx(info.cost_usd)
    await c.close()


# -- retries --------------------------------------------------------------------------


async def test_token_limit_is_retried_with_more_tokens_and_the_command_kept(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    cut = Stream(text="a very long answer that is cut", stop_reason="max_tokens")
    fake_api.script(cut, cut, cut, cut)
    fake_api.default = Stream(text="short enough now")
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    c = await d.client()
    command = f'env X=1 claude  -p "say  hello" --model {MODEL}   # as typed'
    job = await c.start(command, subscribe=True, cwd=str(claude_home))
    events, finals = await finals_of(c, job.id)
    first, second = finals
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "token_limit" and retry.max_output_tokens == 64000
    assert second.command == command  # every byte of the user's command
    assert second.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "64000"
    assert [m.body["max_tokens"] for m in fake_api.messages if m.body] == [32000] * 4 + [64000]
    assert second.exit_code == 0 and second.attempt == 2
    assert stdout_of(events, second.id) == b"short enough now\n"
    await c.close()


async def test_concision_edits_only_the_prompt_word(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.default = Stream(text="still far too long", stop_reason="max_tokens")
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    c = await d.client()
    command = "cd . && claude -p 'Write an essay.'  --max-turns 5"
    job = await c.start(command, subscribe=True, cwd=str(claude_home), retry=RetryParams(max_attempts=2))
    events, finals = await finals_of(c, job.id)
    assert [f.attempt for f in finals] == [1, 2]
    second = finals[1]
    prefix, suffix = "cd . && claude -p ", "  --max-turns 5"
    assert isinstance(second.command, str)
    assert second.command.startswith(prefix) and second.command.endswith(suffix)
    prompt = shlex.split(second.command[len(prefix) : -len(suffix)])
    assert len(prompt) == 1 and prompt[0].startswith("Write an essay.\n\nBe concise")
    await c.close()


async def test_a_stall_is_killed_and_retried(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.script(Hang())
    fake_api.default = Stream(text="after the stall")
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    c = await d.client()
    job = await c.start("claude -p 'say hello'", subscribe=True, cwd=str(claude_home), stall_timeout=3)
    events, finals = await finals_of(c, job.id)
    first, second = finals
    assert first.reason == "idle_timeout" and first.claude is not None and first.claude.error_class == "stall"
    retry = next(ev for ev in events if isinstance(ev, JobRetry))
    assert retry.error_class == "stall" and second.exit_code == 0
    assert stdout_of(events, second.id) == b"after the stall\n"
    await c.close()


async def test_kind_shell_opts_out(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    cut = Stream(text="cut", stop_reason="max_tokens")
    fake_api.script(cut, cut, cut, cut)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    c = await d.client()
    job = await c.start("claude -p hi", subscribe=True, cwd=str(claude_home), kind="shell")
    events = [ev async for ev in c.events(job.id)]
    final = next(ev.job for ev in events if isinstance(ev, JobFinished))
    assert final.exit_code == 1 and final.retried_by is None and final.claude is None
    assert stdout_of(events, job.id).startswith(b"API Error: Claude's response exceeded")
    assert len(fake_api.messages) == 4  # the CLI's own attempts only
    await c.close()


# -- shapes that are not Claude jobs ----------------------------------------------


def test_a_pipeline_outputs_as_before(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    command = "claude -p hi | tr a-z A-Z"
    fake_api.script(Stream(text="shout this"))
    expected = real_cli(fake_api, claude_home, cli_dir, command)
    assert expected.stdout == b"SHOUT THIS\n"
    fake_api.script(Stream(text="shout this"))
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir)
    res = ccxctl(d, "run", "--cwd", str(claude_home), "--", command)
    assert res.returncode == 0 and res.stdout == expected.stdout


# -- the daemon-wide limits -------------------------------------------------------


async def test_concurrency_gate_holds_a_second_shell_claude_job(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    fake_api.default = Stream(text="slow answer " * 40, piece=40, delay=0.05)
    d = start_daemon(daemon_factory, fake_api, claude_home, cli_dir, claude_max_concurrent="1")
    c = await d.client()
    first = await c.start("claude -p one", subscribe=True, cwd=str(claude_home))
    second = await c.start("X=1 claude -p two", subscribe=True, cwd=str(claude_home))
    assert second.state == "queued" and second.wait_reason == "claude concurrency limit"
    finals = []
    for j in (first, second):
        finals += [ev.job async for ev in c.events(j.id) if isinstance(ev, JobFinished)]
    assert all(f.exit_code == 0 for f in finals)
    assert (finals[1].started_at or 0) >= (finals[0].finished_at or 0)
    await c.close()


# -- the renderer on its own ---------------------------------------------------------


@pytest.mark.parametrize(("ending", "code"), [("sys.exit(3)", 3), ("os.kill(os.getpid(), 15)", -15)])
def test_the_renderer_keeps_the_events_prints_the_text_and_ends_as_the_cli_did(
    tmp_path: Path, ending: str, code: int
) -> None:
    fake = tmp_path / "claude"
    fake.write_text(
        "import json, os, sys\n"
        "print(json.dumps({'type': 'system', 'subtype': 'init'}), flush=True)\n"
        "print('a warning on stderr', file=sys.stderr, flush=True)\n"
        "print(json.dumps({'type': 'result', 'subtype': 'success', 'result': 'Four.'}), flush=True)\n"
        f"{ending}\n"
    )
    events = tmp_path / "j.claude"
    textview = Path(__file__).parents[2] / "ccxd" / "claude" / "textview.py"
    res = subprocess.run(
        [sys.executable, "-I", "-S", str(textview), "--events", str(events), "--", sys.executable, str(fake)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (res.stdout, res.stderr, res.returncode) == (b"Four.\n", b"a warning on stderr\n", code)
    lines = events.read_bytes().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["system", "result"]


async def test_a_cli_that_hangs_after_its_result_is_ended(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, tmp_path: Path
) -> None:
    # The known CLI hang, played by a stand-in `claude` (the real one exits): result, then silence.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, time\n"
        "print(json.dumps({'type': 'system', 'subtype': 'init', 'session_id': 's'}), flush=True)\n"
        "print(json.dumps({'type': 'result', 'subtype': 'success', 'is_error': False, 'result': 'Four.',"
        " 'session_id': 's'}), flush=True)\n"
        "time.sleep(120)\n"
    )
    fake.chmod(0o755)
    d = start_daemon(daemon_factory, fake_api, claude_home, bin_dir, claude_exit_grace="1")
    c = await d.client()
    job = await c.start("claude -p 'What is 2+2?'", subscribe=True, cwd=str(claude_home))
    events = [ev async for ev in c.events(job.id)]
    final = next(ev.job for ev in events if isinstance(ev, JobFinished))
    assert stdout_of(events, job.id) == b"Four.\n"
    assert final.claude is not None and final.claude.error_class == "hung_after_result"
    assert final.claude.ok is True and (final.duration or 0) < 60
    await c.close()


# -- the same string from a cc_executor client ----------------------------------------


async def test_a_legacy_execute_of_claude_p_is_retried_and_reads_as_the_cli_would_print_it(
    daemon_factory: Any, fake_api: FakeApi, claude_home: Path, cli_dir: Path
) -> None:
    # cc_executor's headline use: execute "claude -p '...'", and ccxd retries it.
    from tests.compat.test_cc_executor import LEGACY_ENV, Legacy

    cut = Stream(text="a very long answer that is cut", stop_reason="max_tokens")
    fake_api.script(cut, cut, cut, cut)
    fake_api.default = Stream(text="Four.")
    env = claude_env(fake_api, claude_home)
    env["PATH"] = f"{cli_dir}:{env['PATH']}"
    d = daemon_factory(extra_env={**env, **LEGACY_ENV}, root=claude_home / "ccxd")
    c = await Legacy.open(d)
    try:
        assert (await c.next())["method"] == "connected"
        command = f"cd {shlex.quote(str(claude_home))} && claude -p 'What is 2+2?' --model {MODEL}"
        reply = await c.call("execute", {"command": command})
        assert "result" in reply, reply
        seen = []
        while (msg := await c.next())["method"] not in ("process.completed", "process.failed"):
            seen.append(msg)
        final = msg["params"]
    finally:
        await c.ws.close()
    lines = [m["params"]["data"] for m in seen if m["method"] == "process.output"]
    # The retried attempt's answer, as plain text, one line a message; the chain ends once.
    assert lines[-1] == "Four.\n" and "{" not in "".join(lines)
    assert final["exit_code"] == 0 and final["status"] == "completed"
    assert [m.body["max_tokens"] for m in fake_api.messages if m.body][-1] == 64000
    # The failed attempt says it is being retried and by which job; the end is the last attempt's.
    [notice] = [m["params"] for m in seen if m["method"] == "error.token_limit_exceeded"]
    assert notice["recoverable"] is True and notice["next_job_id"] == final["job_id"]
    assert reply["result"]["job_id"] == notice["job_id"] != final["job_id"]
    assert [m["method"] for m in seen].count("process.started") == 1
