"""The hook runner with real hook files, real hook programs and the real reaper (no daemon)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccxd.config import CommandHook, Config
from ccxd.errors import RpcError
from ccxd.hooks.runner import HookRunner
from ccxd.jobs.job import Job
from ccxd.output.log import OutputLog
from ccxd.proc.reaper import Reaper
from ccxd.protocol import ErrorCode, HookMatch, HookTestParams, JobReason, StartParams


@pytest.fixture
async def reaper() -> AsyncIterator[Reaper]:
    r = Reaper(asyncio.get_running_loop())
    r.start()
    yield r
    r.stop()


def write_hooks(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def runner(reaper: Reaper, tmp_path: Path, **settings: object) -> HookRunner:
    config = Config(hooks_dir=str(tmp_path / "hooks"), hooks_entry_points=False, **settings)  # type: ignore[arg-type]
    return HookRunner(config, reaper)


def finished_job(command: str, reason: JobReason, pid: int | None = 4242) -> Job:
    log = OutputLog(1 << 20)
    log.append(0, b"line one\nline two\n")
    log.append(1, b"warning\n")
    job = Job(
        "job1",
        StartParams(command=command, tags=["t"]),
        argv=["sh", "-c", command],
        shell="sh",
        cwd="/tmp",
        log=log,
        node="n",
        peer="",
        timeout=None,
        idle_timeout=None,
    )
    job.pid = pid
    job.settle(reason, exit_code=3 if reason is JobReason.EXITED else None)
    return job


async def test_a_pre_hook_rewrites_the_command_and_env(reaper: Reaper, tmp_path: Path) -> None:
    write_hooks(
        tmp_path / "hooks",
        "rewrite",
        """
        from ccxd.hooks import HookResult

        async def wrap(ctx):
            return HookResult.change(command="nice -n 5 " + ctx.command, env={"WRAPPED": "1"})

        HOOKS = {"pre_execution": [wrap]}
        """,
    )
    r = runner(reaper, tmp_path)
    params, outcomes, _ = await r.pre(StartParams(command="make test", env={"A": "1"}), "j")
    assert params.command == "nice -n 5 make test" and params.env == {"A": "1", "WRAPPED": "1"}
    [o] = outcomes
    assert (o.name, o.point, o.result) == ("rewrite.wrap", "pre_execution", "changed")
    assert o.message == "changed command, env" and o.duration >= 0


async def test_hooks_run_in_order_and_each_sees_the_previous_change(reaper: Reaper, tmp_path: Path) -> None:
    write_hooks(
        tmp_path / "hooks",
        "a_first",
        """
        def add(ctx):  # a plain function: runs in a thread
            return {"update": {"command": ctx.command + " --one"}}
        HOOKS = {"pre": add}
        """,
    )
    write_hooks(
        tmp_path / "hooks",
        "b_second",
        """
        async def add(ctx):
            return {"update": {"command": ctx.command + " --two"}}
        HOOKS = {"pre_execution": [add]}
        """,
    )
    params, outcomes, _ = await runner(reaper, tmp_path).pre(StartParams(command="run"), "j")
    assert params.command == "run --one --two"
    assert [o.name for o in outcomes] == ["a_first.add", "b_second.add"]


async def test_a_hook_that_sleeps_past_its_timeout_never_holds_the_job(
    reaper: Reaper, tmp_path: Path
) -> None:
    write_hooks(
        tmp_path / "hooks",
        "slow",
        """
        import asyncio
        from ccxd.hooks import Hook

        async def stubborn(ctx):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass  # swallows the runner's cancellation: the runner must not wait for it
            await asyncio.sleep(30)

        HOOKS = {"pre_execution": [Hook(stubborn, timeout=0.3, policy="open")]}
        """,
    )
    r = runner(reaper, tmp_path)
    started = time.monotonic()
    params, [o], _ = await r.pre(StartParams(command="true"), "j")
    assert time.monotonic() - started < 5
    assert o.result == "timeout" and o.policy == "open" and "0.3s" in o.message
    assert params.command == "true"


async def test_an_async_hook_that_blocks_the_loop_is_seen_counted_and_disabled(
    reaper: Reaper, tmp_path: Path
) -> None:
    write_hooks(
        tmp_path / "hooks",
        "block",
        """
        import asyncio, time
        from ccxd.hooks import Hook, HookResult

        async def blocks(ctx):
            await asyncio.sleep(0.01)  # a fair step first: only the blocking one counts
            time.sleep(0.3)
            return HookResult.change(command="changed")

        async def fair(ctx):
            await asyncio.sleep(0.5)  # slow but never blocking: no offence

        HOOKS = {"pre_execution": [Hook(blocks, timeout=0.1, policy="open"), Hook(fair, timeout=2)]}
        """,
    )
    r = runner(reaper, tmp_path, hook_block_limit=2)
    params, [first, fair], _ = await r.pre(StartParams(command="true"), "j1")
    assert first.result == "timeout" and params.command == "true"  # its answer is not used
    assert first.message.startswith("blocked the event loop for 0.") and "s (its timeout is 0.1s)" in first.message
    assert first.message.endswith("; 1 of 2 times before it is disabled")
    assert fair.result == "ok"
    _, [second, _], _ = await r.pre(StartParams(command="true"), "j2")
    assert second.message.endswith("; disabled after 2 times until the hooks are reloaded")
    _, outcomes, _ = await r.pre(StartParams(command="true"), "j3")
    assert [o.name for o in outcomes] == ["block.fair"]
    listed = {h.name: h for h in r.describe().hooks}
    assert listed["block.blocks"].loop_blocks == 2 and listed["block.blocks"].disabled
    assert listed["block.fair"].loop_blocks == 0 and listed["block.fair"].disabled is None
    r.reload()
    assert [h.loop_blocks for h in r.describe().hooks] == [0, 0]
    assert len(r.registry.at("pre_execution")) == 2


async def test_a_timed_out_pre_hook_refuses_the_job_by_default(reaper: Reaper, tmp_path: Path) -> None:
    prog = "sleep 30"
    r = runner(
        reaper,
        tmp_path,
        command_hooks=[CommandHook(name="slow", point="pre_execution", command=prog, timeout=0.3)],
    )
    started = time.monotonic()
    with pytest.raises(RpcError) as err:
        await r.pre(StartParams(command="true"), "j")
    assert time.monotonic() - started < 5
    assert err.value.code == ErrorCode.HOOK_REFUSED
    assert (
        err.value.message
        == "refused by hook slow: hook timeout: no answer within 0.3s; killed (policy closed)"
    )
    assert err.value.data["hooks"][0]["result"] == "timeout"


async def test_a_hook_program_is_killed_with_its_children_on_timeout(reaper: Reaper, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    prog = f"sleep 60 & echo $! > {pidfile}; wait"
    r = runner(
        reaper,
        tmp_path,
        command_hooks=[
            CommandHook(name="t", point="pre_execution", command=prog, timeout=0.5, policy="open")
        ],
    )
    _, [o], _ = await r.pre(StartParams(command="true"), "j")
    assert o.result == "timeout"
    child = int(pidfile.read_text())
    try:  # gone, or a zombie waiting for init
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z")


async def test_a_hook_that_raises_is_recorded_and_the_policy_applies(reaper: Reaper, tmp_path: Path) -> None:
    write_hooks(
        tmp_path / "hooks",
        "broken",
        """
        async def oops(ctx):
            raise KeyError("missing")
        HOOKS = {"pre_execution": [oops], "post_execution": [oops]}
        """,
    )
    r = runner(reaper, tmp_path)
    with pytest.raises(RpcError) as err:
        await r.pre(StartParams(command="true"), "j")
    assert "raised KeyError: 'missing' (policy closed)" in err.value.message
    job = finished_job("true", JobReason.EXITED)
    await r.finished(job)  # post: open by default
    [o] = job.hooks
    assert (o.result, o.policy, o.message) == ("failed", "open", "raised KeyError: 'missing'")


async def test_a_hook_program_printing_invalid_json_fails(reaper: Reaper, tmp_path: Path) -> None:
    hook = CommandHook(
        name="garbage", point="pre_execution", command="echo 'this is not json'", policy="open"
    )
    _, [o], _ = await runner(reaper, tmp_path, command_hooks=[hook]).pre(StartParams(command="true"), "j")
    assert (
        o.result == "failed"
        and o.message.startswith("invalid JSON on stdout")
        and "this is not json" in o.message
    )


async def test_exit_code_2_blocks_with_stderr_and_sees_the_context(reaper: Reaper, tmp_path: Path) -> None:
    seen = tmp_path / "ctx.json"
    prog = f"cat > {seen}; echo 'rm is not for robots' >&2; exit 2"
    hook = CommandHook(name="guard", point="pre_execution", command=prog, match=HookMatch(command="^rm "))
    r = runner(reaper, tmp_path, command_hooks=[hook])
    params, outcomes, _ = await r.pre(StartParams(command="ls"), "j")  # not matched: not run
    assert outcomes == [] and not seen.exists()
    with pytest.raises(RpcError) as err:
        await r.pre(StartParams(command="rm -rf build", session="s"), "j2")
    assert err.value.message == "refused by hook guard: rm is not for robots"
    assert err.value.data["reason"] == "rm is not for robots" and err.value.data["hook"] == "guard"
    import json

    ctx = json.loads(seen.read_text())
    assert (
        ctx["tool_input"] == {"command": "rm -rf build"}
        and ctx["job_id"] == "j2"
        and ctx["session_id"] == "s"
    )


async def test_a_missing_program_fails(reaper: Reaper, tmp_path: Path) -> None:
    hook = CommandHook(name="gone", point="pre_execution", command=["/nonexistent/hook"], policy="open")
    _, [o], _ = await runner(reaper, tmp_path, command_hooks=[hook]).pre(StartParams(command="true"), "j")
    assert o.result == "failed" and o.message == "program '/nonexistent/hook' not found"


async def test_post_hooks_see_the_record_and_output_and_annotate(reaper: Reaper, tmp_path: Path) -> None:
    script = tmp_path / "post.py"
    script.write_text(
        "import json, sys\n"
        "ctx = json.load(sys.stdin)\n"
        "print(json.dumps({'annotations': {'exit': ctx['job']['exit_code'], 'tail': ctx['output']['stdout_tail'],"
        " 'stderr': ctx['tool_response']['stderr']}}))\n"
    )
    hook = CommandHook(name="post", point="post_execution", command=[sys.executable, str(script)])
    r = runner(reaper, tmp_path, command_hooks=[hook])
    job = finished_job("make", JobReason.EXITED)
    await r.finished(job)
    [o] = job.hooks
    assert o.result == "annotated"
    assert job.annotations == {"exit": 3, "tail": "line one\nline two\n", "stderr": "warning\n"}
    assert job.info().annotations == job.annotations and job.info().hooks == job.hooks


@pytest.mark.parametrize(
    ("reason", "pid", "post", "event"),
    [
        (JobReason.TIMEOUT, 1, True, "timeout"),
        (JobReason.CANCELLED, None, False, "cancelled"),
        (JobReason.FAILED_TO_START, None, False, "failed_to_start"),
        (JobReason.EXITED, 1, True, None),
    ],
)
async def test_error_hooks_run_for_failures_only(
    reaper: Reaper, tmp_path: Path, reason: JobReason, pid: int | None, post: bool, event: str | None
) -> None:
    write_hooks(
        tmp_path / "hooks",
        "both",
        """
        from ccxd.hooks import HookResult
        async def post(ctx):
            return HookResult.annotate(post=True)
        async def err(ctx):
            return HookResult.annotate(error=ctx.error)
        HOOKS = {"post_execution": [post], "error": [err]}
        """,
    )
    job = finished_job("x", reason, pid)
    await runner(reaper, tmp_path).finished(job)
    expected: dict[str, object] = {}
    if post:
        expected["post"] = True
    if event:
        expected["error"] = event
    assert job.annotations == expected
    assert [o.point for o in job.hooks] == [p for p, on in (("post_execution", post), ("error", event)) if on]


async def test_error_hooks_for_retry_exhaustion(reaper: Reaper, tmp_path: Path) -> None:
    write_hooks(
        tmp_path / "hooks",
        "retry",
        """
        async def err(ctx):
            return {"annotations": {"event": ctx.error}}
        HOOKS = {"error": [err]}
        """,
    )
    job = finished_job("x", JobReason.EXITED)
    await runner(reaper, tmp_path).error(job, "retry_exhausted")
    assert job.annotations == {"event": "retry_exhausted"}


async def test_closed_post_hook_failure_skips_the_rest_of_its_point(reaper: Reaper, tmp_path: Path) -> None:
    hooks = [
        CommandHook(name="first", point="post_execution", command="exit 1", policy="closed"),
        CommandHook(name="second", point="post_execution", command="true"),
    ]
    job = finished_job("x", JobReason.EXITED)
    await runner(reaper, tmp_path, command_hooks=hooks).finished(job)
    assert [(o.name, o.result, o.policy) for o in job.hooks] == [("first", "failed", "closed")]


async def test_files_that_cannot_load_are_reported_and_the_rest_load(reaper: Reaper, tmp_path: Path) -> None:
    d = tmp_path / "hooks"
    write_hooks(d, "good", "async def ok(ctx):\n    return None\nHOOKS = {'error': [ok]}\n")
    write_hooks(d, "syntax", "def (:\n")
    write_hooks(d, "exits", "raise SystemExit(3)\n")
    write_hooks(d, "nohooks", "X = 1\n")
    write_hooks(d, "badpoint", "HOOKS = {'sometimes': []}\n")
    write_hooks(
        d,
        "badmatch",
        "from ccxd.hooks import Hook\nHOOKS = {'error': [Hook(print, match={'command': '('})]}\n",
    )
    r = runner(reaper, tmp_path)
    listed = r.describe()
    assert [h.name for h in listed.hooks] == ["good.ok"]
    text = "\n".join(listed.errors)
    assert "syntax.py: cannot import: SyntaxError" in text
    assert "exits.py: cannot import: SystemExit: 3" in text
    assert "nohooks.py: no HOOKS dict (found NoneType)" in text
    assert "unknown hook point 'sometimes'" in text
    assert "invalid command pattern '('" in text


async def test_reload_sees_edited_files(reaper: Reaper, tmp_path: Path) -> None:
    d = tmp_path / "hooks"
    write_hooks(d, "v", "async def one(ctx):\n    return None\nHOOKS = {'error': [one]}\n")
    r = runner(reaper, tmp_path)
    assert r.names() == ["error:v.one"]
    write_hooks(d, "v", "async def two(ctx):\n    return None\nHOOKS = {'pre_execution': [two]}\n")
    r.reload()
    assert r.names() == ["pre_execution:v.two"]


async def test_dry_run_shows_the_change_without_applying_it(reaper: Reaper, tmp_path: Path) -> None:
    hook = CommandHook(
        name="rw",
        point="pre_execution",
        command="""printf '{"update": {"command": "echo safe", "env": {"X": "1"}}}'""",
    )
    r = runner(reaper, tmp_path, command_hooks=[hook])
    res = await r.test(HookTestParams(name="rw", command="echo risky"))
    assert res.matched and not res.refused and res.outcome is not None and res.outcome.result == "changed"
    assert res.changes == {"command": "echo safe", "env": {"X": "1"}}
    with pytest.raises(RpcError, match="no hook named 'nope' \\(loaded: pre_execution:rw\\)"):
        await r.test(HookTestParams(name="nope", command="x"))
