"""The ``ccxctl`` commands (typer), all talking to the daemon through ``ccxd.client``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from ccxctl.render import describe_outcome, emit_event, emit_json, human_duration, job_rows, table
from ccxctl.runjob import (
    EX_NOPERM,
    EX_NOT_RUNNING,
    RunOptions,
    env_from,
    exit_code_for_error,
    not_running_hint,
    parse_priority,
    run_job,
)
from ccxctl.top import resource_fields
from ccxd.client import (
    AccessDenied,
    Client,
    ClientError,
    DaemonNotRunning,
    InvalidAddress,
    RemoteError,
    UntrustedDaemon,
    connect,
)
from ccxd.protocol import (
    ClaudeBudget,
    EmptyParams,
    GroupInfo,
    GroupList,
    GroupSetParams,
    HistoryParams,
    HookList,
    HookTestParams,
    HookTestResult,
    JobFinished,
    JobInfo,
    JobList,
    JobRef,
    JobState,
    OutputChunk,
    OutputCut,
    OutputGap,
    PruneParams,
    PruneResult,
    ReloadResult,
    SessionDetail,
    SessionList,
    SessionListParams,
    SessionRef,
    ShutdownParams,
    ShutdownResult,
    StartParams,
    StatsParams,
    StatsResult,
    WorktreeDiff,
    WorktreeList,
    WorktreePruneResult,
    WorktreeRmParams,
    WorktreeRmResult,
)

__all__ = ["app", "run_app"]

T = TypeVar("T")

app = typer.Typer(
    name="ccxctl",
    help="Control the ccxd supervisor daemon: run jobs, follow them, read their history.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
history_app = typer.Typer(help="Jobs that ran, their output and statistics.", no_args_is_help=True)
sessions_app = typer.Typer(help="Named groups of jobs (run --session NAME).", no_args_is_help=True)
app.add_typer(history_app, name="history")
app.add_typer(sessions_app, name="sessions")
hooks_app = typer.Typer(help="Hooks: what is loaded, and dry runs.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
group_app = typer.Typer(
    help="Queue groups: how many of a group's jobs run at once, pause and resume.", no_args_is_help=True
)
app.add_typer(group_app, name="group")
worktree_app = typer.Typer(
    help="Git worktrees of jobs started with --worktree: list, diff, remove.", no_args_is_help=True
)
app.add_typer(worktree_app, name="worktree")


class Target:
    """Where the daemon is, from the global options."""

    def __init__(self, socket: str | None, url: str | None, token_file: str | None) -> None:
        self.socket = socket
        self.url = url
        self.token_file = token_file

    async def connect(self) -> Client:
        """Open a client to the daemon."""
        return await connect(self.url or self.socket, token_file=self.token_file)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def main_options(
    ctx: typer.Context,
    socket: Annotated[str | None, typer.Option(envvar="CCXD_SOCKET", help="Daemon Unix socket path.")] = None,
    url: Annotated[
        str | None,
        typer.Option(envvar="CCXD_URL", help="Remote daemon: ws://HOST[:PORT][/ws], wss://…, or unix:PATH."),
    ] = None,
    token_file: Annotated[
        str | None, typer.Option(envvar="CCXD_TOKEN_FILE", help="File holding the WebSocket token.")
    ] = None,
) -> None:
    """Control the ccxd supervisor daemon."""
    ctx.obj = Target(socket, url, token_file)


def _target(ctx: typer.Context) -> Target:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Target) else Target(None, None, None)


def _fail(message: str, code: int = 1) -> typer.Exit:
    sys.stderr.write(f"ccxctl: {message}\n")
    return typer.Exit(code)


def _with_client(ctx: typer.Context, work: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        client = await _target(ctx).connect()
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except InvalidAddress as exc:
        raise _fail(str(exc), 2) from None
    except DaemonNotRunning as exc:
        raise _fail(not_running_hint(str(exc)), EX_NOT_RUNNING) from None
    except (AccessDenied, UntrustedDaemon) as exc:
        raise _fail(str(exc), EX_NOPERM) from None
    except RemoteError as exc:  # params the daemon refused are a usage error, as in `run`
        raise _fail(exc.message, exit_code_for_error(exc.code)) from None
    except ClientError as exc:
        raise _fail(str(exc)) from None


# -- run ----------------------------------------------------------------------

GroupOpt = Annotated[
    str | None, typer.Option(help="Queue group: at most its parallel limit run at once (ccxctl group).")
]
PriorityOpt = Annotated[
    str, typer.Option(help="high, normal, low or a number: queued jobs start by priority, then age.")
]
AfterOpt = Annotated[
    list[str] | None,
    typer.Option("--after", help="Start once this job succeeded (else end dependency_failed); repeatable."),
]
AfterAnyOpt = Annotated[
    list[str] | None, typer.Option("--after-any", help="Start once this job ended, however; repeatable.")
]
WorktreeOpt = Annotated[
    bool,
    typer.Option("--worktree", help="Run in a fresh git worktree of the cwd's repository (branch ccxd/ID)."),
]


def _priority(text: str) -> str | int:
    try:
        return parse_priority(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--priority") from None


def _parse_env(values: list[str], files: list[str] | None = None) -> dict[str, str]:
    try:
        return env_from(values, files or [], os.environ)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The command (words are joined with spaces).")],
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the job id and return.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit in seconds (0: none).")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without output.")
    ] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory (default: the current one).")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="KEY=VALUE, or NAME for ccxctl's $NAME (unseen by ps); repeatable."),
    ] = None,
    env_file: Annotated[
        list[str] | None,
        typer.Option("--env-file", help="A file of KEY=VALUE lines (# comments); repeatable, --env wins."),
    ] = None,
    shell: Annotated[str | None, typer.Option(help="zsh, bash, sh, or a path.")] = None,
    session: Annotated[str | None, typer.Option(help="Group the job under this session name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag, repeatable.")] = None,
    argv: Annotated[
        bool, typer.Option("--argv", help="Run the words as an argument list, without a shell.")
    ] = False,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit, e.g. 512M or 2G (no swap); past it: reason oom.")
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU quota in CPUs, e.g. 1.5.")] = None,
    pids: Annotated[int | None, typer.Option(help="Most processes/threads at once.")] = None,
    group: GroupOpt = None,
    priority: PriorityOpt = "normal",
    after: AfterOpt = None,
    after_any: AfterAnyOpt = None,
    worktree: WorktreeOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a job, stream its output, exit with its exit code (124 timeout, 130 Ctrl-C)."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise typer.BadParameter("a command is required", param_hint="COMMAND")
    target = _target(ctx)
    opts = RunOptions(
        command=command,
        argv=argv,
        detach=detach,
        timeout=timeout,
        idle_timeout=idle_timeout,
        cwd=cwd,
        env=_parse_env(env or [], env_file),
        shell=shell,
        session=session,
        tags=tag or [],
        memory=memory,
        cpus=cpus,
        pids=pids,
        group=group,
        priority=_priority(priority),
        after=after or [],
        after_any=after_any or [],
        worktree=worktree,
        json=json_out,
        socket=target.socket,
        url=target.url,
        token_file=target.token_file,
    )
    raise typer.Exit(run_job(opts))


@app.command("claude")
def claude_cmd(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt (passed as one argument, no shell).")],
    model: Annotated[str | None, typer.Option(help="--model for the CLI.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="--max-turns for the CLI.")] = None,
    max_budget_usd: Annotated[
        float | None,
        typer.Option("--max-budget-usd", help="End the job once its cost passes this many USD."),
    ] = None,
    allowed_tools: Annotated[
        list[str] | None, typer.Option("--allowed-tools", help="A tool the CLI may use, repeatable.")
    ] = None,
    mcp_config: Annotated[str | None, typer.Option(help="--mcp-config: a file or JSON.")] = None,
    resume: Annotated[str | None, typer.Option(help="Resume this Claude session (same cwd!).")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory (default: the current one).")] = None,
    session: Annotated[str | None, typer.Option(help="Group the job under this ccxd session.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit in seconds (0: none).")] = None,
    partial: Annotated[
        bool, typer.Option("--include-partial-messages", help="Token-level events (see --json).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress on stderr.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the job id and return.")] = False,
    group: GroupOpt = None,
    priority: PriorityOpt = "normal",
    after: AfterOpt = None,
    after_any: AfterAnyOpt = None,
    worktree: WorktreeOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run Claude Code as a ccxd job; print its result (exit 1 with the error class on failure)."""
    from ccxctl.claude_cmd import claude_job

    params = StartParams(
        kind="claude",
        prompt=prompt,
        model=model,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
        allowed_tools=allowed_tools or [],
        mcp_config=mcp_config,
        resume=resume,
        cwd=os.path.abspath(cwd or os.getcwd()),
        session=session,
        timeout=timeout,
        include_partial_messages=partial,
        group=group,
        priority=_priority(priority),  # type: ignore[arg-type]
        after=after or [],
        after_any=after_any or [],
        worktree=worktree,
    )
    raise typer.Exit(
        _with_client(ctx, lambda c: claude_job(c, params, json_out=json_out, verbose=verbose, detach=detach))
    )


# -- following ----------------------------------------------------------------


class _Prefixer:
    """Prefixes each output line with its job id when several jobs share a terminal."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.at_line_start = {"stdout": True, "stderr": True}

    def format(self, stream: str, data: bytes) -> bytes:
        if not self.prefix:
            return data
        out = bytearray()
        for piece in data.splitlines(keepends=True):
            if self.at_line_start[stream]:
                out += self.prefix
            out += piece
            self.at_line_start[stream] = piece.endswith(b"\n")
        return bytes(out)


async def _follow(client: Client, job_id: str, offset: int, prefix: bytes, json_out: bool) -> int:
    fmt = _Prefixer(prefix)
    async for ev in client.follow(job_id, from_offset=offset):
        if json_out:
            emit_event(ev)
        elif isinstance(ev, OutputChunk):
            stream = sys.stdout.buffer if ev.stream == "stdout" else sys.stderr.buffer
            stream.write(fmt.format(ev.stream, ev.raw()))
            stream.flush()
        elif isinstance(ev, OutputGap):
            sys.stderr.write(f"ccxctl: [{job_id}] output {ev.start}-{ev.end} is no longer available\n")
        elif isinstance(ev, OutputCut):
            sys.stderr.write(f"ccxctl: [{job_id}] output was cut at {ev.limit} bytes\n")
        if isinstance(ev, JobFinished):
            from ccxctl.runjob import exit_code_for

            return exit_code_for(ev.job)
    return 1


@app.command()
def attach(
    ctx: typer.Context,
    jobs: Annotated[list[str], typer.Argument(help="Job ids.")],
    from_offset: Annotated[int, typer.Option(help="Resume at this output offset (one job only).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Replay then follow jobs live; with several jobs each line is prefixed by its job."""
    if from_offset and len(jobs) > 1:
        raise typer.BadParameter("--from-offset needs exactly one job")

    async def work(client: Client) -> int:
        codes = await asyncio.gather(
            *(
                _follow(client, j, from_offset, f"[{j}] ".encode() if len(jobs) > 1 else b"", json_out)
                for j in jobs
            )
        )
        return max(codes)

    raise typer.Exit(_with_client(ctx, work))


@app.command()
def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following the live output.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print a job's output so far (stdout to stdout, stderr to stderr)."""

    async def work(client: Client) -> None:
        offset = 0
        while True:
            page = await client.read(job, offset=offset, max_bytes=4 << 20)
            for chunk in page.chunks:
                if json_out:
                    emit_event(chunk)
                else:
                    stream = sys.stdout.buffer if chunk.stream == "stdout" else sys.stderr.buffer
                    stream.write(chunk.raw())
            offset = page.next_offset
            if page.eof or not page.chunks:
                break
        sys.stdout.flush()
        if follow and not page.eof:
            await _follow(client, job, offset, b"", json_out)

    _with_client(ctx, work)


# -- jobs -----------------------------------------------------------------------


@app.command()
def ps(
    ctx: typer.Context,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Include finished jobs.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List jobs: queued, running and paused ones (all with --all), newest first."""
    finished: list[int] = []

    async def work(client: Client) -> list[JobInfo]:
        jobs = await client.list(limit=limit if all_jobs else 10_000)
        if not all_jobs:
            finished.append(sum(j.state == JobState.FINISHED for j in jobs))
            jobs = [j for j in jobs if j.state != JobState.FINISHED][:limit]
        return jobs

    jobs = _with_client(ctx, work)
    if json_out:
        emit_json(jobs)
        return
    table(*job_rows(jobs))
    if not jobs and finished and finished[0]:
        n = finished[0]
        print(f"(nothing queued or running; {n} finished job{'s' if n != 1 else ''}: ccxctl ps --all)")


def _job_action(ctx: typer.Context, call: Callable[[Client], Awaitable[JobInfo]], json_out: bool) -> None:
    info = _with_client(ctx, call)
    if json_out:
        emit_json(info)
    else:
        print(f"{info.id}\t{info.state}\t{describe_outcome(info)}")


@app.command()
def cancel(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Cancel a job: SIGTERM to its whole tree, SIGKILL after the grace period; print how it ended."""

    async def work(client: Client) -> JobInfo:
        info = await client.cancel(job)
        if info.state == JobState.FINISHED:
            return info
        try:  # the tree gets kill_grace to go after SIGTERM, then SIGKILL: it ends soon
            return await asyncio.wait_for(client.wait(job), CANCEL_WAIT)
        except TimeoutError:
            return await client.get(job)

    _job_action(ctx, work, json_out)


CANCEL_WAIT = 60.0
"""Seconds ``cancel`` waits for the job's end before it prints the state as it is."""


@app.command()
def pause(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Pause a job (SIGSTOP to every process of it)."""
    _job_action(ctx, lambda c: c.pause(job), json_out)


@app.command()
def resume(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """Resume a paused job (SIGCONT)."""
    _job_action(ctx, lambda c: c.resume(job), json_out)


@app.command("signal")
def signal_cmd(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    sig: Annotated[str, typer.Argument(metavar="SIGNAL", help="Name (TERM, SIGUSR1) or number.")],
    json_out: JsonOpt = False,
) -> None:
    """Send a signal to every process of a job."""
    _job_action(ctx, lambda c: c.signal(job, sig), json_out)


@app.command()
def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1)] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print the table once and exit.")] = False,
) -> None:
    """Running jobs and their CPU, memory (and peak), limits, processes and IO, live."""
    from ccxctl.top import run_top

    with contextlib.suppress(KeyboardInterrupt):
        _with_client(ctx, lambda c: run_top(c, interval, once))


@app.command()
def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The daemon's version, pid, uptime, jobs by state, listeners, loop lag and store."""
    st = _with_client(ctx, lambda c: c.status())
    if json_out:
        emit_json(st)
        return
    jobs = ", ".join(f"{n} {state}" for state, n in st.jobs.items() if n) or "none"
    rows = [
        ["version", st.version],
        ["pid", str(st.pid)],
        ["node", st.node],
        ["uptime", human_duration(st.uptime)],
        ["jobs", jobs],
        ["listeners", ", ".join(f"{x.kind} {x.address}" for x in st.listeners)],
        ["loop lag", f"{st.loop_lag_ms:.1f} ms"],
        ["connections", str(st.connections)],
    ]
    if st.fd_limit:
        rows.append(["descriptors", f"limit {st.fd_limit}"])
    turned = st.refused
    ws_turned = turned.ws_handshakes + turned.ws_peer + turned.ws_descriptors
    if ws_turned:
        rows.append(
            [
                "turned away",
                f"{ws_turned} WebSocket connections before login ({turned.ws_handshakes} ws_handshakes_max, "
                f"{turned.ws_peer} ws_handshakes_per_peer, {turned.ws_descriptors} fd_reserve)",
            ]
        )
    if turned.unix_max_connections or turned.unix_descriptors:
        rows.append(
            [
                "turned away",
                f"{turned.unix_max_connections} Unix clients (max_connections), "
                f"{turned.unix_descriptors} (out of descriptors)",
            ]
        )
    rows += [
        ["shell", st.shell],
        ["shim", st.shim or "unknown (a daemon older than this ccxctl)"],
        ["store", st.store],
    ]
    health = st.store_health
    if health.refused:
        rows.append(["refused", f"{health.refused} store writes; last: {health.last_refused}"])
    if health.journal_dropped:
        full = "journal full, " if health.journal_full else ""
        rows.append(["journal", f"{full}{health.journal_dropped} writes dropped (journal_max_bytes)"])
    rows += [
        ["cgroups", st.cgroups],
        ["hooks", str(st.hooks)],
    ]
    for m in st.metrics:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(m.reasons.items()))
        mean = m.duration_sum / m.count if m.count else 0.0
        rows.append(["metrics", f"{m.count}x {m.signature[:60]}  ({reasons}; mean {human_duration(mean)})"])
    if sys.stdout.isatty():
        for key, value in rows:
            print(f"{key + ':':<13}{value}")
    else:
        for key, value in rows:
            print(f"{key}\t{value}")


@app.command()
def shutdown(
    ctx: typer.Context,
    mode: Annotated[
        str | None,
        typer.Option(help="cancel, drain, or leave (jobs run on for the next daemon); default: on_stop."),
    ] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds jobs may finish (drain).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Stop the daemon; --mode says what happens to running jobs."""
    if mode is not None and mode not in ("cancel", "drain", "leave"):
        raise typer.BadParameter("mode must be cancel, drain or leave", param_hint="--mode")
    params = ShutdownParams(mode=mode, drain_timeout=drain_timeout)  # type: ignore[arg-type]
    res: ShutdownResult = _with_client(ctx, lambda c: c.call("daemon.shutdown", params))
    if json_out:
        emit_json(res)
        return
    what = {"cancel": "cancelling", "drain": "draining", "leave": "leaving running"}[res.mode]
    print(f"ccxd is stopping ({what} {res.running} job{'s' if res.running != 1 else ''})")


@app.command()
def reload(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Re-read the config and hooks (as SIGHUP does); say what changed."""
    res: ReloadResult = _with_client(ctx, lambda c: c.call("daemon.reload", EmptyParams()))
    if json_out:
        emit_json(res)
    elif res.error is None:
        print("ccxd reloaded its config: " + (", ".join(res.changed) or "no changes"))
        if res.restart_needed:
            print("these settings take a restart to change: " + ", ".join(res.restart_needed))
    if res.error is not None:
        if not json_out:
            print(f"ccxctl: reload failed, ccxd keeps its config: {res.error}", file=sys.stderr)
        raise typer.Exit(1)


# -- history --------------------------------------------------------------------

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` ago; an ISO date/time; or epoch seconds."""
    m = _AGO.match(text.strip())
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"cannot read {text!r}: use 2h, 1d, 2026-11-24 or epoch seconds", param_hint="--since"
        ) from None


@history_app.command("list")
def history_list(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Option(help="Only this session's jobs.")] = None,
    status_filter: Annotated[
        str | None, typer.Option("--status", help="State or reason: running, exited, timeout, lost …")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs queued since: 2h, 1d, a date.")] = None,
    grep: Annotated[str | None, typer.Option(help="Only commands matching this regular expression.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Stored jobs, newest first."""
    query = HistoryParams(
        session=session,
        status=status_filter,  # type: ignore[arg-type]  # the daemon checks it, naming the choices
        since=parse_since(since) if since else None,
        grep=grep,
        limit=limit,
    )
    res: JobList = _with_client(ctx, lambda c: c.call("history.list", query))
    if json_out:
        emit_json(res.jobs)
        return
    table(*job_rows(res.jobs))


@history_app.command("show")
def history_show(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    json_out: JsonOpt = False,
) -> None:
    """A stored job's record, then its output."""

    async def work(client: Client) -> tuple[JobInfo, bytes, bytes]:
        info = await client.get(job)
        out, err = bytearray(), bytearray()
        offset = 0
        while True:
            page = await client.read(job, offset=offset, max_bytes=4 << 20)
            for chunk in page.chunks:
                (out if chunk.stream == "stdout" else err).extend(chunk.raw())
            if page.eof or not page.chunks:
                break
            offset = page.next_offset
        return info, bytes(out), bytes(err)

    info, out, err = _with_client(ctx, work)
    if json_out:
        emit_json(
            {"job": info, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}
        )
        return
    fields: dict[str, Any] = {
        "id": info.id,
        "state": info.state,
        "outcome": describe_outcome(info),
        "command": info.command if isinstance(info.command, str) else " ".join(info.command),
        "cwd": info.cwd,
        "shell": info.shell or "-",
        "session": info.session or "-",
        "duration": human_duration(info.duration),
        "timeout": _timeout_text(info),
        "output": f"{info.stdout_bytes} bytes stdout, {info.stderr_bytes} bytes stderr",
        "node": info.node,
        "peer": info.peer or "-",
    }
    if info.error:
        fields["error"] = info.error
    fields.update(resource_fields(info))
    if info.claude is not None:
        from ccxctl.render import claude_fields

        fields.update(claude_fields(info.claude))
    wt = info.worktree
    if wt is not None:  # started with --worktree
        fields["worktree"] = f"{wt.path} (branch {wt.branch} from {wt.base[:12]})"
        if wt.diffstat is not None:
            d = wt.diffstat
            fields["changes"] = (
                f"{d.files} file(s), +{d.insertions} -{d.deletions}, {d.commits} commit(s), "
                + ("dirty" if wt.dirty else "clean")
            )
    for key, value in fields.items():
        print(f"{key + ':':<10}{value}")
    print("--- output ---")
    sys.stdout.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)


def _timeout_text(info: JobInfo) -> str:
    if not info.timeout:
        return "none"
    if info.timeout_silence is None:
        return f"{info.timeout:g}s ({info.timeout_basis})"
    quiet = f"{info.timeout_silence:g}s"
    return f"{info.timeout:g}s, then only after {quiet} without output ({info.timeout_basis})"


@history_app.command("stats")
def history_stats(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None, typer.Argument(help="A command; its signature is looked up.")
    ] = None,
    claude: Annotated[
        bool, typer.Option("--claude", help="Claude cost and tokens per day and session, and the budgets.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="With --claude: jobs queued since: 2h, 7d.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Count, p50, p95, success rate and the timeout estimate per command signature."""
    if claude:
        from ccxctl.render import usage_tables

        query = HistoryParams(since=parse_since(since) if since else None, limit=10_000)

        async def work(c: Client) -> tuple[JobList, ClaudeBudget]:
            return await c.call("history.list", query), await c.call("claude.budget", EmptyParams())

        listed, budget = _with_client(ctx, work)
        usage_tables(listed.jobs, json_out, budget)
        return
    params = StatsParams(command=" ".join(command) if command else None)
    res: StatsResult = _with_client(ctx, lambda c: c.call("history.stats", params))
    if json_out:
        emit_json(res.signatures)
        return

    def secs(v: float | None) -> str:
        return "-" if v is None else human_duration(v)

    table(
        ["signature", "runs", "success", "timeouts", "p50", "p95", "timeout estimate"],
        [
            [
                s.signature,
                str(s.count),
                f"{s.success_rate * 100:.0f}%",
                str(s.timeouts),
                secs(s.p50),
                secs(s.p95),
                f"{secs(s.estimate)} ({s.basis})",
            ]
            for s in res.signatures
        ],
    )


@history_app.command("prune")
def history_prune(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option(help="Remove finished jobs older than: 30d, 12h.")] = None,
    keep: Annotated[int | None, typer.Option(help="Keep at most this many finished jobs.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove old finished jobs and their output (defaults: the retention settings)."""
    age = time.time() - parse_since(older_than) if older_than else None
    res: PruneResult = _with_client(
        ctx, lambda c: c.call("history.prune", PruneParams(older_than=age, keep=keep))
    )
    if json_out:
        emit_json(res)
    else:
        print(f"removed {res.removed} jobs")


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many sessions.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Sessions by last activity."""
    res: SessionList = _with_client(ctx, lambda c: c.call("session.list", SessionListParams(limit=limit)))
    if json_out:
        emit_json(res.sessions)
        return
    table(
        ["name", "jobs", "created", "last active"],
        [
            [
                s.name,
                str(s.jobs),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_active)),
            ]
            for s in res.sessions
        ],
    )


@sessions_app.command("show")
def sessions_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Session name.")],
    json_out: JsonOpt = False,
) -> None:
    """One session and its jobs."""
    res: SessionDetail = _with_client(ctx, lambda c: c.call("session.get", SessionRef(name)))
    if json_out:
        emit_json(res)
        return
    print(f"session {res.session.name}: {res.session.jobs} jobs")
    table(*job_rows(res.jobs))


# -- queue groups and waiting ----------------------------------------------------


def _group_rows(groups: list[GroupInfo]) -> None:
    rows = [
        [
            g.name,
            str(g.parallel) if g.parallel is not None else "-",
            "paused" if g.paused else "-",
            str(g.running),
            str(g.queued),
            g.source,
        ]
        for g in groups
    ]
    table(["group", "parallel", "paused", "running", "queued", "limit from"], rows)


@group_app.command("list")
def group_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Groups: their parallel limit, whether paused, jobs running and queued."""
    res: GroupList = _with_client(ctx, lambda c: c.call("group.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    _group_rows(res.groups)


def _group_set(ctx: typer.Context, params: GroupSetParams, json_out: bool) -> None:
    info: GroupInfo = _with_client(ctx, lambda c: c.call("group.set", params))
    if json_out:
        emit_json(info)
        return
    _group_rows([info])


@group_app.command("set")
def group_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    parallel: Annotated[
        int, typer.Option(help="Its jobs running at once at most (0: back to the configured limit).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Change a group's parallel limit until the daemon stops (the config's groups set it at start)."""
    _group_set(ctx, GroupSetParams(name=name, parallel=parallel), json_out)


@group_app.command("pause")
def group_pause(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")], json_out: JsonOpt = False
) -> None:
    """Hold the group's queued jobs (its running jobs go on)."""
    _group_set(ctx, GroupSetParams(name=name, paused=True), json_out)


@group_app.command("resume")
def group_resume(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")], json_out: JsonOpt = False
) -> None:
    """Let the group's queued jobs start again."""
    _group_set(ctx, GroupSetParams(name=name, paused=False), json_out)


@app.command()
def wait(
    ctx: typer.Context,
    jobs: Annotated[list[str] | None, typer.Argument(help="Job ids.")] = None,
    group: Annotated[
        str | None, typer.Option(help="Also every job of this group queued or running now.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 124).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait until the jobs end; print how each ended; exit with the worst of their exit codes."""
    from ccxctl.runjob import EX_TIMEOUT, exit_code_for

    ids = list(dict.fromkeys(jobs or []))
    if not ids and group is None:
        raise typer.BadParameter("name job ids, or --group NAME", param_hint="JOBS")

    async def work(client: Client) -> tuple[list[JobInfo], list[str]]:
        if group is not None:
            listed = await client.list(limit=10_000)
            ids.extend(
                j.id
                for j in reversed(listed)
                if j.group == group and j.id not in ids and j.state != JobState.FINISHED
            )
            sys.stderr.write(f"ccxctl: waiting for {len(ids)} job(s): {' '.join(ids)}\n")
            sys.stderr.flush()
        tasks = {job_id: asyncio.ensure_future(client.wait(job_id)) for job_id in ids}
        ended: list[JobInfo] = []
        if tasks:
            pending = set(tasks.values())
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            while pending:
                left = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
                done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    info = task.result()
                    ended.append(info)
                    if not json_out:
                        print(f"{info.id}\t{describe_outcome(info)}", flush=True)
            for task in pending:
                task.cancel()
        finished = {info.id for info in ended}
        return ended, [job_id for job_id in ids if job_id not in finished]

    ended, still = _with_client(ctx, work)
    if json_out:
        emit_json(ended)
    if still:
        sys.stderr.write(f"ccxctl: still not ended after {timeout:g}s: {' '.join(still)}\n")
        raise typer.Exit(EX_TIMEOUT)
    raise typer.Exit(max((exit_code_for(info) for info in ended), default=0))


# -- worktrees ------------------------------------------------------------------


@worktree_app.command("list")
def worktree_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Jobs' worktrees: branch, path, whether running, dirty (uncommitted changes) or merged."""
    res: WorktreeList = _with_client(ctx, lambda c: c.call("worktree.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return

    def flag(value: bool | None, yes: str, no: str) -> str:
        return "?" if value is None else yes if value else no

    rows = [
        [
            w.job_id,
            w.branch,
            "running" if w.running else "gone" if not w.exists else flag(w.dirty, "dirty", "clean"),
            flag(w.merged, "merged", "-"),
            w.path,
        ]
        for w in res.worktrees
    ]
    table(["job", "branch", "tree", "merged", "path"], rows)


@worktree_app.command("diff")
def worktree_diff(
    ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")], json_out: JsonOpt = False
) -> None:
    """The job's changes against its base commit: commits, uncommitted and untracked files, one patch."""
    res: WorktreeDiff = _with_client(ctx, lambda c: c.call("worktree.diff", JobRef(job)))
    if json_out:
        emit_json(res)
        return
    sys.stdout.write(res.diff)
    if res.truncated:
        sys.stderr.write("ccxctl: the diff was cut at 512 KiB (git -C PATH diff BASE shows it all)\n")


@worktree_app.command("rm")
def worktree_rm(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Also with uncommitted changes, and an unmerged branch.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove the job's worktree and its branch (refused with uncommitted changes unless --force)."""
    params = WorktreeRmParams(job_id=job, force=force)
    res: WorktreeRmResult = _with_client(ctx, lambda c: c.call("worktree.rm", params))
    if json_out:
        emit_json(res)
        return
    print(f"{job}: worktree removed" + (", branch deleted" if res.branch_deleted else ""))
    if res.note:
        print(res.note)


@worktree_app.command("prune")
def worktree_prune(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Apply the cleanup policy now (worktree_keep_days, worktree_remove_merged), as each minute does."""
    res: WorktreePruneResult = _with_client(ctx, lambda c: c.call("worktree.prune", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    for job_id in res.removed:
        print(f"{job_id}\tremoved")
    for job_id, why in res.kept.items():
        print(f"{job_id}\tkept: {why}")


# -- hooks ----------------------------------------------------------------------


@hooks_app.command("list")
def hooks_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Loaded hooks in running order: point, name, kind, policy, timeout, matchers, source."""
    res: HookList = _with_client(ctx, lambda c: c.call("hooks.list", EmptyParams()))
    if json_out:
        emit_json(res)
        return
    if not res.enabled:
        print("hooks are disabled (hooks_enabled = false)")
    rows = []
    for h in res.hooks:
        m = h.match
        match = " ".join(
            part
            for part in (
                f"command~{m.command}" if m.command else "",
                f"kind={m.kind}" if m.kind else "",
                f"session={m.session}" if m.session else "",
                f"tags={','.join(m.tags)}" if m.tags else "",
            )
            if part
        )
        rows.append([h.point, h.name, h.kind, h.policy, f"{h.timeout:g}s", match or "*", h.source])
    table(["point", "name", "kind", "policy", "timeout", "match", "source"], rows)
    for h in res.hooks:  # async hooks that blocked the daemon's event loop (runner.py)
        if h.disabled:
            print(f"{h.point} {h.name}: DISABLED: {h.disabled}")
        elif h.loop_blocks:
            print(f"{h.point} {h.name}: blocked the event loop past its timeout {h.loop_blocks} times")
    for problem in res.errors:
        sys.stderr.write(f"ccxctl: not loaded: {problem}\n")


@hooks_app.command("test")
def hooks_test(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name (as hooks list shows it).")],
    command: Annotated[str, typer.Option("--command", "-c", help="The command of the pretend job.")],
    point: Annotated[str | None, typer.Option(help="pre_execution, post_execution or error.")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory of the pretend job.")] = None,
    env: Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")] = [],  # noqa: B006
    session: Annotated[str | None, typer.Option(help="Session of the pretend job.")] = None,
    tag: Annotated[list[str], typer.Option("--tag", help="Tag (repeatable).")] = [],  # noqa: B006
    exit_code: Annotated[int, typer.Option(help="Post/error hooks: the pretend exit code.")] = 0,
    reason: Annotated[str, typer.Option(help="Post/error hooks: why the pretend job ended.")] = "exited",
    json_out: JsonOpt = False,
) -> None:
    """Dry run: show what one hook would do to a job running COMMAND (the job is not run)."""
    import msgspec

    try:
        params = msgspec.convert(
            {
                "name": name,
                "command": command,
                "point": point,
                "cwd": cwd,
                "env": _parse_env(env),
                "session": session,
                "tags": tag,
                "exit_code": exit_code,
                "reason": reason,
            },
            HookTestParams,
        )
    except msgspec.ValidationError as exc:
        raise _fail(f"invalid option: {exc}", 2) from None
    res: HookTestResult = _with_client(ctx, lambda c: c.call("hooks.test", params))
    if json_out:
        emit_json(res)
        return
    if not res.matched or res.outcome is None:
        print(f"{name}: does not match this job (it would not run)")
        return
    o = res.outcome
    print(
        f"{o.name} ({o.point}): {o.result} in {o.duration * 1000:.1f} ms"
        + (f" - {o.message}" if o.message else "")
    )
    if o.policy is not None:
        print(f"policy {o.policy}: " + ("the job would be refused" if res.refused else "the job would go on"))
    elif res.refused:
        print("the job would be refused")
    for key, value in res.changes.items():
        print(f"  {key} = {msgspec.json.encode(value).decode()}")
    for key, value in res.annotations.items():
        print(f"  annotation {key} = {msgspec.json.encode(value).decode()}")
    if res.refused:
        raise typer.Exit(1)


# -- first run --------------------------------------------------------------------


ConfigOpt = Annotated[
    str | None, typer.Option("--config", help="Config file (default: $XDG_CONFIG_HOME/ccxd/config.toml).")
]


@app.command()
def init(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replace existing files without asking.")] = False,
) -> None:
    """Write a commented default config and the token; install and enable the systemd user units."""
    from pathlib import Path

    from ccxctl.firstrun.init import run_init

    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return typer.confirm(question, default=False)

    raise typer.Exit(run_init(Path(config) if config else None, ask, print))


@app.command()
def doctor(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Check the installation, one line each, with the fix for what is wrong (exit 1 on a failure)."""
    from pathlib import Path

    from ccxctl.firstrun.doctor import run_checks

    raise typer.Exit(run_checks(Path(config) if config else None, print, as_json=json_out))


@app.command("mcp")
def mcp_cmd(ctx: typer.Context) -> None:
    """Serve ccxd's tools to an AI agent over MCP on stdin/stdout (claude mcp add ccxd -- ccxctl mcp)."""
    try:
        from ccxd.mcp.stdio import serve_stdio
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith(("mcp", "pydantic", "anyio")):
            raise
        raise _fail("`ccxctl mcp` needs the MCP SDK: pip install 'ccxd[mcp]'") from None
    target = _target(ctx)
    serve_stdio(target.url or target.socket, target.token_file)


def run_app(args: list[str]) -> int:
    """Run the typer app on ``args`` and return its exit code."""
    try:
        app(args=args, prog_name="ccxctl", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
