"""Hooks in a real daemon: hook files, hook programs, entry points, reloads, built-ins, ccxctl."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import textwrap
import urllib.request
from pathlib import Path

import pytest

from ccxd.protocol import HistoryParams, HookEvent, JobFinished, JobStarted
from tests.ccxctl.test_ccxctl import ccxctl
from tests.helpers import RawConnection, run_job

REWRITE_AND_ANNOTATE = """
from ccxd.hooks import Hook, HookMatch, HookResult

async def rewrite(ctx):
    if ctx.command == "echo original":
        return HookResult.change(command="echo rewritten; echo $FROM_HOOK", env={"FROM_HOOK": "env too"})
    return None

async def count_lines(ctx):
    return HookResult.annotate(lines=ctx.output.stdout_tail.count("\\n"), exit=ctx.job.exit_code)

async def on_error(ctx):
    return HookResult.annotate(error_seen=ctx.error)

HOOKS = {
    "pre_execution": [rewrite],
    "post_execution": [count_lines],
    "error": [Hook(on_error, match=HookMatch(tags=["watched"]))],
}
"""


def hooks_dir(root: Path, **files: str) -> Path:
    d = root / "hooks"
    d.mkdir(exist_ok=True)
    for name, body in files.items():
        (d / f"{name}.py").write_text(textwrap.dedent(body))
    return d


def command_hooks(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


async def test_pre_hook_rewrites_post_hook_annotates_and_subscribers_hear_both(daemon_factory, tmp_root):
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(hooks_dir(tmp_root, demo=REWRITE_AND_ANNOTATE))})
    c = await d.client()
    out, _, job, events = await run_job(c, "echo original")
    assert out == b"rewritten\nenv too\n"
    assert job.command == "echo rewritten; echo $FROM_HOOK"
    assert job.annotations == {"lines": 2, "exit": 0}
    assert [(h.name, h.point, h.result) for h in job.hooks] == [
        ("demo.rewrite", "pre_execution", "changed"),
        ("demo.count_lines", "post_execution", "annotated"),
    ]
    # Notifications: the pre hook's outcome before job.started, the post hook's before job.finished.
    kinds = [type(e).__name__ if not isinstance(e, HookEvent) else e.hook.point for e in events]
    assert kinds.index("pre_execution") < kinds.index("JobStarted")
    assert kinds.index("post_execution") < kinds.index("JobFinished")
    assert isinstance(events[-1], JobFinished)
    assert all(e.job_id == job.id for e in events if isinstance(e, HookEvent | JobStarted))
    # The record keeps them, in memory and in history (Redis).
    stored = await c.get(job.id)
    assert stored.annotations == job.annotations and stored.hooks == job.hooks
    history = await c.call("history.list", HistoryParams(grep="rewritten"))
    assert history.jobs[0].annotations == job.annotations
    await c.close()


async def test_error_hooks_see_timeouts_failed_starts_and_cancellations(daemon_factory, tmp_root):
    d = daemon_factory(
        extra_env={
            "CCXD_HOOKS_DIR": str(hooks_dir(tmp_root, demo=REWRITE_AND_ANNOTATE)),
            "CCXD_KILL_GRACE": "0.2",
            "CCXD_MAX_CONCURRENT_JOBS": "1",
        }
    )
    c = await d.client()
    _, _, job, _ = await run_job(c, "sleep 30", timeout=0.3, tags=["watched"])
    assert job.reason == "timeout" and job.annotations["error_seen"] == "timeout"
    _, _, job, _ = await run_job(c, "true", cwd="/nonexistent", tags=["watched"])
    assert job.reason == "failed_to_start" and job.annotations == {"error_seen": "failed_to_start"}
    assert [h.point for h in job.hooks] == ["pre_execution", "error"]  # it never ran: no post hook
    _, _, job, _ = await run_job(c, "sleep 30", timeout=0.3)  # not tagged: the error hook does not match
    assert "error_seen" not in job.annotations
    # A job cancelled while queued finishes at once; its error hook updates the record after.
    blocker = await c.start("sleep 30")
    queued = await c.start("true", tags=["watched"], subscribe=True)
    await c.cancel(queued.id)
    events = [e async for e in c.events(queued.id)]
    assert isinstance(events[-1], JobFinished) and events[-1].job.reason == "cancelled"
    await c.cancel(blocker.id)
    for _ in range(100):
        rec = await c.get(queued.id)
        if any(h.point == "error" for h in rec.hooks):
            break
        await asyncio.sleep(0.05)  # the error hook runs after the job finished; nothing to wait on
    assert rec.annotations == {"error_seen": "cancelled"}
    await c.close()


def test_a_blocking_hook_program_refuses_with_hook_refused_and_its_reason(daemon_factory, tmp_root):
    guard = {
        "name": "no-rm",
        "point": "pre_execution",
        "command": "cat >/dev/null; echo 'rm is not for robots' >&2; exit 2",
        "match": {"command": "^rm "},
    }
    d = daemon_factory(extra_env={"CCXD_COMMAND_HOOKS": command_hooks(guard)})
    c = RawConnection(d.socket)
    reply = c.call("job.start", {"command": "rm -rf build"})
    assert reply["error"]["code"] == -32007
    assert reply["error"]["message"] == "refused by hook no-rm: rm is not for robots"
    assert reply["error"]["data"]["hook"] == "no-rm"
    assert reply["error"]["data"]["hooks"][0]["result"] == "blocked"
    assert c.call("job.list", {"state": "finished"}, req_id=2)["result"]["jobs"] == []  # no job was made
    ok = c.call("job.start", {"command": "echo fine"}, req_id=3)["result"]
    assert ok["state"] in ("starting", "running")
    res = ccxctl(d, "run", "rm -rf build")
    assert res.returncode == 1 and res.stderr == b"ccxctl: refused by hook no-rm: rm is not for robots\n"


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_a_hanging_or_garbage_printing_hook_follows_its_policy(daemon_factory, policy):
    hooks = command_hooks(
        {
            "name": "hangs",
            "point": "pre_execution",
            "command": "sleep 60",
            "timeout": 0.3,
            "match": {"tags": ["h"]},
        },
        {"name": "garbage", "point": "pre_execution", "command": "echo '{oops'", "match": {"tags": ["g"]}},
    )
    d = daemon_factory(extra_env={"CCXD_COMMAND_HOOKS": hooks, "CCXD_HOOK_POLICY_PRE_EXECUTION": policy})
    c = RawConnection(d.socket)
    for tag, result in (("h", "timeout"), ("g", "failed")):
        reply = c.call("job.start", {"command": "echo ran", "tags": [tag], "subscribe": True})
        if policy == "closed":
            assert reply["error"]["code"] == -32007 and "(policy closed)" in reply["error"]["message"]
            assert reply["error"]["data"]["hooks"][0]["result"] == result
        else:
            job = reply["result"]
            assert job["hooks"][0]["result"] == result and job["hooks"][0]["policy"] == "open"
            while True:
                msg = c.recv()
                if msg.get("method") == "job.finished":
                    assert msg["params"]["job"]["exit_code"] == 0
                    break
    assert "timed out after 0.3s" in d.log()


def test_hooks_from_an_installed_package_entry_point(daemon_factory, tmp_root):
    site = tmp_root / "site"
    pkg = site / "tinyhooks"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            async def tag_it(ctx):
                return {"annotations": {"from": "tinyhooks"}}
            HOOKS = {"post_execution": [tag_it]}
            """
        )
    )
    dist = site / "tinyhooks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyhooks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ccxd.hooks]\ntiny = tinyhooks\n")
    d = daemon_factory(extra_env={"PYTHONPATH": str(site)})
    c = RawConnection(d.socket)
    listed = c.call("hooks.list")["result"]
    assert [(h["name"], h["source"]) for h in listed["hooks"]] == [
        ("tiny.tag_it", "entry point tiny = tinyhooks")
    ]
    c.call("job.start", {"command": "true", "subscribe": True}, req_id=2)
    while (msg := c.recv()).get("method") != "job.finished":
        pass
    assert msg["params"]["job"]["annotations"] == {"from": "tinyhooks"}


def test_sighup_reloads_hooks(daemon_factory, tmp_root):
    d_hooks = hooks_dir(tmp_root, first="async def a(ctx):\n    return None\nHOOKS = {'error': [a]}\n")
    d = daemon_factory(extra_env={"CCXD_HOOKS_DIR": str(d_hooks)})
    c = RawConnection(d.socket)
    assert [h["name"] for h in c.call("hooks.list")["result"]["hooks"]] == ["first.a"]
    (d_hooks / "first.py").unlink()
    (d_hooks / "second.py").write_text(
        "async def b(ctx):\n    return {'block': True, 'reason': 'new'}\nHOOKS = {'pre': b}\n"
    )
    d.proc.send_signal(signal.SIGHUP)
    while "READY=1" not in d.next_notify().split("\n"):
        pass
    assert [h["name"] for h in c.call("hooks.list", req_id=2)["result"]["hooks"]] == ["second.b"]
    assert (
        c.call("job.start", {"command": "true"}, req_id=3)["error"]["message"]
        == "refused by hook second.b: new"
    )


def test_ccxctl_hooks_list_and_dry_run(daemon_factory, tmp_root):
    hooks = command_hooks(
        {
            "name": "wrap",
            "point": "pre_execution",
            "command": """printf '{"update": {"command": "nice make"}}'""",
            "match": {"command": "^make", "kind": "shell"},
            "timeout": 2,
        },
        {
            "name": "deny",
            "point": "pre_execution",
            "command": "echo nope >&2; exit 2",
            "match": {"tags": ["x"]},
        },
    )
    d = daemon_factory(extra_env={"CCXD_COMMAND_HOOKS": hooks, "CCXD_HOOKS_DIR": str(tmp_root / "none")})
    listed = ccxctl(d, "hooks", "list", fast=False)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.decode().splitlines()
    assert lines[0].split() == ["point", "name", "kind", "policy", "timeout", "match", "source"]
    assert lines[1].split()[:6] == ["pre_execution", "wrap", "command", "closed", "2s", "command~^make"]
    as_json = json.loads(ccxctl(d, "hooks", "list", "--json", fast=False).stdout)
    assert [h["name"] for h in as_json["hooks"]] == ["wrap", "deny"]

    dry = ccxctl(d, "hooks", "test", "wrap", "--command", "make all", fast=False)
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout.decode()
    assert out.startswith("wrap (pre_execution): changed in ") and '  command = "nice make"' in out
    skipped = ccxctl(d, "hooks", "test", "wrap", "--command", "ls", fast=False)
    assert skipped.stdout == b"wrap: does not match this job (it would not run)\n"
    refused = ccxctl(d, "hooks", "test", "deny", "--command", "ls", "--tag", "x", fast=False)
    assert (
        refused.returncode == 1
        and "blocked" in refused.stdout.decode()
        and "would be refused" in refused.stdout.decode()
    )
    unknown = ccxctl(d, "hooks", "test", "nope", "--command", "ls", fast=False)
    assert unknown.returncode == 2 and b"no hook named 'nope'" in unknown.stderr
    # The dry run started no job.
    assert RawConnection(d.socket).call("job.list")["result"]["jobs"] == []


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_builtin_venv_and_policy(daemon_factory, tmp_root):
    project = tmp_root / "project"
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (project / "sub").mkdir()
    env = {
        "CCXD_BUILTIN_HOOKS": "venv,policy",
        "CCXD_POLICY_DENY": r'["\\bmkfs\\b", "^shutdown"]',
        "CCXD_HOOKS_DIR": str(tmp_root / "none"),
    }
    d = daemon_factory(extra_env=env)
    c = RawConnection(d.socket)
    reply = c.call(
        "job.start",
        {"command": "echo $VIRTUAL_ENV; echo $PATH", "cwd": str(project / "sub"), "subscribe": True},
    )
    out = ""
    while (msg := c.recv()).get("method") != "job.finished":
        if msg.get("method") == "job.output":
            out += msg["params"]["data"]
    venv_line, path_line = out.splitlines()
    assert venv_line == str(project / ".venv")
    assert path_line.startswith(str(project / ".venv" / "bin") + ":")
    assert reply["result"]["hooks"][0]["result"] == "changed"
    denied = c.call("job.start", {"command": "sudo mkfs /dev/sda"}, req_id=2)["error"]
    assert denied["message"] == "refused by hook policy: command matches the deny pattern '\\\\bmkfs\\\\b'"


def test_builtin_claude_precheck(daemon_factory, tmp_root):
    bin_dir = tmp_root / "bin"
    bin_dir.mkdir()
    home = tmp_root / "home"
    home.mkdir()
    d = daemon_factory(extra_env={"CCXD_BUILTIN_HOOKS": "claude_precheck", "HOME": str(home)})
    d.env.pop("ANTHROPIC_API_KEY", None)
    c = RawConnection(d.socket)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)}
    missing = c.call("job.start", {"command": "claude -p hi", "env": base})["error"]
    assert missing["code"] == -32007 and "the claude CLI is not installed" in missing["message"]
    # A CLI stand-in: the check is about finding a program and credentials, not about running it.
    _executable(bin_dir / "claude", "#!/bin/sh\necho claude ran\n")
    logged_out = c.call("job.start", {"command": "claude -p hi", "env": base}, req_id=2)["error"]
    assert logged_out["message"].startswith("refused by hook claude_precheck: Claude Code is not logged in")
    ok = c.call("job.start", {"command": "claude -p hi", "env": {**base, "ANTHROPIC_API_KEY": "k"}}, req_id=3)
    assert ok["result"]["hooks"][0]["message"].endswith("credentials from $ANTHROPIC_API_KEY")
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text("{}")
    assert "result" in c.call("job.start", {"command": ["claude", "-p", "x"], "env": base}, req_id=4)
    # Shell jobs are not looked at.
    assert "hooks" not in c.call("job.start", {"command": "echo claude", "env": base}, req_id=5)["result"]


async def test_builtin_metrics_in_status_and_prometheus(daemon_factory, tmp_root):
    d = daemon_factory(extra_env={"CCXD_BUILTIN_HOOKS": "metrics", "CCXD_METRICS_LISTEN": "127.0.0.1:0"})
    c = await d.client()
    for code in (0, 0, 3):
        await run_job(c, f"exit {code}")
    await run_job(c, "true", cwd="/nonexistent")
    st = await c.status()
    by_sig = {m.signature: m for m in st.metrics}
    assert by_sig["exit <n>"].count == 3 and by_sig["exit <n>"].reasons == {"exited": 3}
    assert by_sig["exit <n>"].exit_codes == {"0": 2, "3": 1}
    assert by_sig["true"].reasons == {"failed_to_start": 1}
    [url] = [x.address for x in st.listeners if x.kind == "metrics"]
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {d.token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    assert 'ccxd_command_runs_total{signature="exit <n>",reason="exited"} 3' in text
    assert 'ccxd_command_exits_total{signature="exit <n>",code="3"} 1' in text
    assert 'ccxd_hook_runs_total{hook="metrics",result="ok"} 4' in text
    shown = ccxctl(d, "status", fast=False).stdout.decode()
    assert "hooks\t2" in shown and "metrics\t3x exit <n>" in shown
    await c.close()
    # Counters live in the store: a restarted daemon still has them.
    d.stop()
    d.start()
    c = await d.client()
    assert {m.signature: m.count for m in (await c.status()).metrics}["exit <n>"] == 3
    await c.close()


async def test_cc_executor_hook_status_lists_the_loaded_hooks(daemon_factory, tmp_root):
    from tests.compat.test_cc_executor import LEGACY_ENV, Legacy

    d_hooks = hooks_dir(
        tmp_root, audit="async def a(ctx):\n    return None\nHOOKS = {'error': [a], 'post': [a]}\n"
    )
    d = daemon_factory({**LEGACY_ENV, "CCXD_HOOKS_DIR": str(d_hooks), "CCXD_BUILTIN_HOOKS": "venv"})
    c = await Legacy.open(d)
    assert (await c.next())["method"] == "connected"
    status = (await c.call("hook_status"))["result"]
    assert status == {
        "enabled": True,
        "hooks": ["pre_execution:venv", "post_execution:audit.a", "error:audit.a"],
        "message": "3 hooks loaded",
    }
    await c.ws.close()
