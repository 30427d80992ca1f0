"""End to end: the real ``claude`` CLI calls ccxd's submit tool through ``ccxctl mcp``.

The fake Anthropic API answers the first turn with a ``tool_use`` of
``mcp__ccxd__ccxd_submit``; the CLI starts ``ccxctl mcp`` from its ``--mcp-config``,
calls the tool, the job runs under a real ccxd, and the CLI's next request to the
API carries the tool result: the job id and the job's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.claude.cli import claude_env
from tests.claude.fake_api import FakeApi, Stream, ToolUse
from tests.conftest import DaemonProcess


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks of the last user message of a Messages API request."""
    last = body["messages"][-1]
    assert last["role"] == "user"
    content = last["content"]
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _text(block: dict[str, Any]) -> str:
    content = block["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def test_claude_cli_runs_a_job_through_ccxd_mcp(
    claude_bin: str, fake_api: FakeApi, claude_home: Path, daemon: DaemonProcess
) -> None:
    work = claude_home / "project"
    work.mkdir()
    command = "echo built by $(basename $PWD); echo job=$CCXD_JOB_ID"
    fake_api.script(
        ToolUse(name="mcp__ccxd__ccxd_submit", input={"command": command, "wait": 30}, text="Running it."),
        Stream(text="The build ran."),
    )
    config = {
        "mcpServers": {
            "ccxd": {
                "command": sys.executable,
                "args": ["-m", "ccxctl", "mcp"],
                "env": {"CCXD_SOCKET": str(daemon.socket)},
            }
        }
    }
    argv = [claude_bin, "-p", "build the project", "--output-format", "stream-json", "--verbose"]
    argv += ["--mcp-config", json.dumps(config), "--strict-mcp-config"]
    argv += ["--allowedTools", "mcp__ccxd__ccxd_submit"]
    proc = subprocess.run(
        argv,
        env=claude_env(fake_api, claude_home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]

    # The CLI started `ccxctl mcp` and took its tools (it may defer their schemas to ToolSearch).
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    [init] = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    assert {"name": "ccxd", "status": "connected"}.items() <= init["mcp_servers"][0].items()
    assert {"mcp__ccxd__ccxd_submit", "mcp__ccxd__ccxd_wait", "mcp__ccxd__ccxd_logs"} <= set(init["tools"])

    assert len(fake_api.messages) == 2
    second = fake_api.messages[1].body
    assert second is not None
    [result] = _tool_results(second)
    assert result["tool_use_id"] == "toolu_fake1" and not result.get("is_error")
    answer = json.loads(_text(result))
    job_id = answer["job_id"]
    assert answer["outcome"] == "exit 0"
    assert answer["output"] == f"built by project\njob={job_id}\n"  # ran in the CLI's directory, under ccxd

    from ccxd.client.sync import SyncClient

    with SyncClient(str(daemon.socket)) as client:
        record = client.get(job_id)
    assert record.command == command and record.exit_code == 0 and record.cwd == str(work)


async def test_submit_a_claude_prompt(
    claude_bin: str, fake_api: FakeApi, claude_home: Path, daemon_factory: Any
) -> None:
    from tests.mcp.helpers import call, mcp_session

    daemon = daemon_factory({"CCXD_CLAUDE_PROGRAM": claude_bin, "CCXD_CLAUDE_RETRY": "false"})
    fake_api.script(Stream(text="Hello from a Claude job."))
    async with mcp_session(daemon, cwd=claude_home) as session:
        env = claude_env(fake_api, claude_home)
        done = await call(session, "ccxd_submit", prompt="say hello", env=env, wait=50)
        for _ in range(3):  # a loaded machine: the answer after 50 s is "still running"
            if done["finished"]:
                break
            done = await call(session, "ccxd_wait", job_id=done["job_id"], timeout=50)
    assert done["finished"] is True and done["outcome"] == "exit 0", done
    assert done["claude"]["ok"] is True and done["claude"]["result"] == "Hello from a Claude job."
    assert done["cwd"] == str(claude_home)
    [request] = fake_api.messages
    assert request.body is not None and "say hello" in json.dumps(request.body["messages"])


def test_claude_cli_runs_a_job_through_the_daemons_http_mcp(
    claude_bin: str, fake_api: FakeApi, claude_home: Path, daemon: DaemonProcess
) -> None:
    work = claude_home / "project"
    work.mkdir()
    command = "echo over http in $(basename $PWD)"
    fake_api.script(
        ToolUse(
            name="mcp__ccxd__ccxd_submit",
            input={"command": command, "wait": 30},
            text="On it.",
        ),
        Stream(text="Done."),
    )
    # What `claude mcp add --transport http ccxd URL --header "Authorization: Bearer TOKEN"` writes.
    server = {
        "type": "http",
        "url": f"{daemon.http_url}/mcp",
        "headers": {"Authorization": f"Bearer {daemon.token}"},
    }
    argv = [claude_bin, "-p", "build it", "--output-format", "stream-json", "--verbose"]
    argv += ["--mcp-config", json.dumps({"mcpServers": {"ccxd": server}}), "--strict-mcp-config"]
    argv += ["--allowedTools", "mcp__ccxd__ccxd_submit"]
    proc = subprocess.run(
        argv,
        env=claude_env(fake_api, claude_home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    [init] = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    assert {"name": "ccxd", "status": "connected"}.items() <= init["mcp_servers"][0].items()

    assert len(fake_api.messages) == 2
    second = fake_api.messages[1].body
    assert second is not None
    [result] = _tool_results(second)
    assert not result.get("is_error"), _text(result)
    answer = json.loads(_text(result))
    # No cwd in the call: the daemon asked the CLI for its roots (roots/list) and ran it in the project.
    assert answer["outcome"] == "exit 0" and answer["output"] == "over http in project\n"
    from ccxd.client.sync import SyncClient

    with SyncClient(str(daemon.socket)) as client:
        assert client.get(answer["job_id"]).command == command  # the daemon's own job
