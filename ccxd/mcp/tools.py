"""ccxd's MCP tools and resources: what each does over :class:`ccxd.client.Client`.

No tool blocks longer than :data:`~ccxd.mcp.results.WAIT_MAX` seconds (MCP
clients give up on a call after about a minute): a job runs under ccxd, not in
the call, and ``ccxd_wait`` says "still running" when its bound is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp_types import ListRootsResult, ToolAnnotations
from pydantic import Field

from ccxd import __version__
from ccxd.client import Client, ClientError, DaemonNotRunning, RemoteError
from ccxd.mcp import results
from ccxd.protocol import HistoryParams, HistoryStatus, JobInfo, JobList, SessionList, SessionListParams

__all__ = ["INSTRUCTIONS", "JobTools", "build_server"]

RESOURCE_MAX_BYTES = 4 * 1024 * 1024
"""The most output the ``ccxd://job/{id}/output`` resource holds (then a note says how to read on)."""

INSTRUCTIONS = """\
ccxd runs shell commands and Claude Code jobs under a supervisor daemon, outside this
conversation: a job keeps running (with a timeout, its whole process tree killed when it
ends) whatever happens to the call that started it, and its output and record are kept.
Start a job with ccxd_submit (it answers at once with a job_id, or waits up to `wait`
seconds), then follow it with ccxd_wait (waits at most 50 s per call; call it again while
the job is still running), ccxd_logs (output from a byte offset) and ccxd_status; stop it
with ccxd_cancel. ccxd_history searches jobs that ran before; ccxd_sessions lists named
groups of jobs."""

Connect = Callable[[], Awaitable[Client]]


class JobTools:
    """The tools' handlers, over one lazily opened, reconnecting client connection.

    ``default_cwd`` is where a job runs when the caller names no directory (the
    bridge's own directory when the daemon is local; None: the daemon's choice).
    """

    def __init__(self, connect: Connect, default_cwd: str | None = None, client_roots: bool = False) -> None:
        self._connect = connect
        self._default_cwd = default_cwd
        self.client_roots = client_roots
        """Without a ``default_cwd``, run jobs in the client's first root (MCP ``roots/list``) when it
        is a directory here: the daemon's own ``/mcp`` cannot know where the agent works otherwise."""
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        # One follower per waited job, shared by concurrent and repeated waits: two readers
        # of one job's events would split them, and a wait cut at its bound resumes here.
        self._waits: dict[str, asyncio.Task[JobInfo]] = {}

    async def client(self) -> Client:
        """The connection to the daemon, opened at the first call."""
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
            return self._client

    async def close(self) -> None:
        """Close the connection (jobs keep running)."""
        for task in list(self._waits.values()):
            task.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- tools ------------------------------------------------------------------

    async def submit(
        self,
        command: str | None = None,
        prompt: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        session: str | None = None,
        env: dict[str, str] | None = None,
        wait: float = 0.0,
        root: str | None = None,
    ) -> dict[str, Any]:
        """Start a shell or Claude job; with ``wait``, wait for it that long (bounded).

        ``root`` is the client's directory, where a job runs when there is no ``default_cwd``.
        """
        if (command is None) == (prompt is None):
            raise ToolError("give exactly one of `command` (a shell command) or `prompt` (a Claude job)")
        options: dict[str, Any] = {"timeout": timeout, "session": session, "env": env or {}}
        here = self._default_cwd or root
        if cwd is not None and here is not None:
            cwd = os.path.join(here, os.path.expanduser(cwd))
        options["cwd"] = cwd or here
        if prompt is not None:
            options.update(kind="claude", prompt=prompt)
        client = await self.client()
        try:
            info = await client.start(command, **options)
        except (msgspec.ValidationError, TypeError) as exc:
            raise ToolError(f"invalid job: {exc}") from None
        if wait > 0:
            return await self.wait(info.id, wait)
        out = results.job_summary(info)
        out["note"] = "started: follow it with ccxd_wait, ccxd_logs or ccxd_status using this job_id"
        return out

    async def status(self, job_id: str) -> dict[str, Any]:
        """One job's state, outcome and times."""
        client = await self.client()
        return results.job_summary(await client.get(job_id))

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait up to ``timeout`` (≤ 50) seconds for the job; its record and the end of its output."""
        limit = results.clamp_wait(timeout, 30.0)
        client = await self.client()
        info = await client.get(job_id)
        if info.state != "finished" and limit > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    info = await asyncio.shield(self._follower(client, job_id))
        if info.state != "finished":
            info = await client.get(job_id)
        if info.state != "finished":
            return results.still_running(info, limit)
        return await self._with_tail(client, info)

    def _follower(self, client: Client, job_id: str) -> asyncio.Task[JobInfo]:
        """The task that waits for ``job_id`` to finish, made by the first wait."""
        task = self._waits.get(job_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(client.wait(job_id))
            self._waits[job_id] = task

            def done(t: asyncio.Task[JobInfo]) -> None:
                if self._waits.get(job_id) is t:
                    del self._waits[job_id]
                if not t.cancelled():
                    t.exception()  # retrieved: a waiter that is still there gets it too

            task.add_done_callback(done)
        return task

    async def _with_tail(self, client: Client, info: JobInfo) -> dict[str, Any]:
        out = results.job_summary(info)
        start = max(0, info.output_bytes - results.TAIL_BYTES)
        page = await client.read(info.id, offset=start, max_bytes=results.TAIL_BYTES)
        out["output"] = results.output_text(page.chunks)
        if start > 0:
            out["output_note"] = (
                f"the last {results.TAIL_BYTES} bytes of {info.output_bytes}: "
                "ccxd_logs with offset=0 reads it from the start"
            )
        return out

    async def logs(self, job_id: str, offset: int = 0, max_bytes: int | None = None) -> dict[str, Any]:
        """A page of a job's output from byte ``offset``."""
        client = await self.client()
        page = await client.read(job_id, offset=max(0, offset), max_bytes=results.clamp_bytes(max_bytes))
        return results.logs_result(page.chunks, page.next_offset, page.eof, page.gap)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: SIGTERM to its whole process tree, then SIGKILL after the grace period."""
        client = await self.client()
        return results.job_summary(await client.cancel(job_id))

    async def history(
        self,
        status: HistoryStatus | None = None,
        since: str | None = None,
        grep: str | None = None,
        session: str | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        """Jobs newest first, filtered."""
        try:
            after = results.since_epoch(since, time.time()) if since else None
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        query = HistoryParams(
            status=status, since=after, grep=grep, session=session, limit=max(1, min(limit, 200))
        )
        client = await self.client()
        res: JobList = await client.call("history.list", query)
        return {"jobs": [results.job_summary(j) for j in res.jobs], "count": len(res.jobs)}

    async def sessions(self, limit: int = 50) -> dict[str, Any]:
        """Sessions by last activity."""
        client = await self.client()
        params = SessionListParams(limit=max(1, min(limit, 1000)))
        res: SessionList = await client.call("session.list", params)
        return {"sessions": [msgspec.to_builtins(s) for s in res.sessions]}

    # -- resources --------------------------------------------------------------

    async def output(self, job_id: str) -> str:
        """A job's output as text (up to :data:`RESOURCE_MAX_BYTES`)."""
        client = await self.client()
        parts: list[str] = []
        offset, size = 0, 0
        while size < RESOURCE_MAX_BYTES:
            page = await client.read(job_id, offset=offset, max_bytes=min(1 << 20, RESOURCE_MAX_BYTES - size))
            parts.append(results.output_text(page.chunks))
            size += page.next_offset - offset
            offset = page.next_offset
            if page.eof or not page.chunks:
                return "".join(parts)
        parts.append(f"\n[ccxd: output continues past byte {offset}: ccxd_logs offset={offset} reads on]\n")
        return "".join(parts)

    async def record(self, job_id: str) -> str:
        """A job's whole record as JSON."""
        client = await self.client()
        return msgspec.json.encode(await client.get(job_id)).decode()


def first_root(listed: ListRootsResult | None) -> str | None:
    """The first ``file://`` root that is a directory on this machine."""
    for root in listed.roots if listed is not None else ():
        parts = urlsplit(str(root.uri))
        path = unquote(parts.path)
        if parts.scheme == "file" and parts.netloc in ("", "localhost") and os.path.isdir(path):
            return path
    return None


@contextlib.asynccontextmanager
async def _told(error: type[Exception]) -> AsyncIterator[None]:
    """Turn the daemon's refusals into an error the model reads (not a crash)."""
    try:
        yield
    except DaemonNotRunning as exc:
        raise error(f"{exc}; start it with `ccxd` (or `systemctl --user start ccxd`)") from None
    except RemoteError as exc:
        raise error(exc.message) from None
    except ClientError as exc:
        raise error(str(exc)) from None


JobId = Annotated[str, Field(description="The job's id, as ccxd_submit or ccxd_history gave it.")]

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def build_server(tools: JobTools) -> MCPServer[Any]:
    """The MCP server: ccxd's tools and resources, handled by ``tools``."""
    server: MCPServer[Any] = MCPServer(
        name="ccxd",
        title="ccxd job supervisor",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    def ask_roots(ctx: Context, cwd: str | None = None) -> ListRoots | None:
        """Ask the client for its roots (``roots/list``) when a job's directory depends on them."""
        caps = ctx.session.client_capabilities
        if not tools.client_roots or caps is None or caps.roots is None:
            return None
        return None if cwd and os.path.isabs(os.path.expanduser(cwd)) else ListRoots()

    async def ccxd_submit(
        command: Annotated[
            str | None, Field(description="Shell command line to run (or give `prompt` instead).")
        ] = None,
        prompt: Annotated[
            str | None, Field(description="Prompt of a Claude Code job (instead of `command`).")
        ] = None,
        cwd: Annotated[
            str | None,
            Field(description="Working directory (default: the project's, where the MCP client runs)."),
        ] = None,
        timeout: Annotated[
            float | None,
            Field(description="Kill the job after this many seconds (default: ccxd's estimate or config)."),
        ] = None,
        session: Annotated[
            str | None, Field(description="Session name to group related jobs (see ccxd_sessions).")
        ] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables for the job.")
        ] = None,
        wait: Annotated[
            float, Field(description="Seconds to wait for the job to finish before answering (0–50).")
        ] = 0.0,
        roots: ListRootsResult | None = None,
    ) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.submit(command, prompt, cwd, timeout, session, env, wait, first_root(roots))

    # `roots` is filled by this server's resolver, which a (string) annotation in the signature cannot name.
    ccxd_submit.__annotations__["roots"] = Annotated[ListRootsResult | None, Resolve(ask_roots)]
    server.tool(
        name="ccxd_submit",
        description=(
            "Start a job under the ccxd supervisor and answer at once with its job_id. Give `command` "
            "(a shell command line, run with the user's shell, e.g. `make test`, `pytest -x tests/`) or "
            "`prompt` (a headless Claude Code job: `claude -p PROMPT`). The job runs outside this call: "
            "long builds, test suites and servers are fine. With `wait` (seconds, at most 50) the call "
            "waits that long and, if the job finished, answers with its exit code and the end of its "
            "output; otherwise follow it with ccxd_wait, ccxd_logs or ccxd_status."
        ),
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True),
    )(ccxd_submit)

    @server.tool(
        name="ccxd_status",
        description=(
            "One job's state (queued, running, paused, finished), outcome (`exit 0`, `signal 9`, "
            "`timeout`, `cancelled` …), exit code, times and output size. Answers at once."
        ),
        annotations=_READ_ONLY,
    )
    async def ccxd_status(job_id: JobId) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.status(job_id)

    @server.tool(
        name="ccxd_wait",
        description=(
            "Wait for a job to finish, for at most `timeout` seconds (default 30, at most 50). "
            "When it finished: its outcome, exit code and the last 8 KiB of its output. When it is "
            "still running: `finished: false` and a note; call ccxd_wait again to keep waiting "
            "(the job is not affected by the wait ending)."
        ),
        annotations=_READ_ONLY,
    )
    async def ccxd_wait(
        job_id: JobId,
        timeout: Annotated[float, Field(description="Seconds to wait at most (0–50).")] = 30.0,
    ) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.wait(job_id, timeout)

    @server.tool(
        name="ccxd_logs",
        description=(
            "A job's output (stdout and stderr interleaved as printed) from byte `offset`, at most "
            f"`max_bytes` (default and limit {results.LOGS_MAX_BYTES}). Answers with `text`, "
            "`next_offset` (pass it as `offset` to read on) and `eof` (true once the job finished "
            "and everything was read). Works while the job runs and after it ended."
        ),
        annotations=_READ_ONLY,
    )
    async def ccxd_logs(
        job_id: JobId,
        offset: Annotated[int, Field(description="Byte offset to read from (0: the start).", ge=0)] = 0,
        max_bytes: Annotated[
            int, Field(description=f"Most bytes to return (1–{results.LOGS_MAX_BYTES}).", ge=1)
        ] = results.LOGS_MAX_BYTES,
    ) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.logs(job_id, offset, max_bytes)

    @server.tool(
        name="ccxd_cancel",
        description=(
            "Cancel a queued or running job: SIGTERM to its whole process tree, SIGKILL after a grace "
            "period. Answers with the job's state at once (ccxd_wait shows it finished `cancelled`)."
        ),
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def ccxd_cancel(job_id: JobId) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.cancel(job_id)

    @server.tool(
        name="ccxd_history",
        description=(
            "Search jobs ccxd ran (kept across restarts), newest first: filter by `status` (a state "
            "such as running, or how a job ended: exited, timeout, cancelled, killed, lost, oom …), "
            "`since` (2h, 1d, 30m, an ISO date, or epoch seconds), `grep` (a regular expression "
            "over the command) and `session`."
        ),
        annotations=_READ_ONLY,
    )
    async def ccxd_history(
        status: Annotated[
            HistoryStatus | None, Field(description="Only jobs in this state or ended this way.")
        ] = None,
        since: Annotated[str | None, Field(description="Only jobs queued since: 2h, 1d, a date.")] = None,
        grep: Annotated[
            str | None, Field(description="Only commands matching this regular expression.")
        ] = None,
        session: Annotated[str | None, Field(description="Only this session's jobs.")] = None,
        limit: Annotated[int, Field(description="At most this many jobs (1–200).", ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.history(status, since, grep, session, limit)

    @server.tool(
        name="ccxd_sessions",
        description="Named sessions (groups of jobs started with a `session`), most recently active first.",
        annotations=_READ_ONLY,
    )
    async def ccxd_sessions(
        limit: Annotated[int, Field(description="At most this many sessions.", ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        async with _told(ToolError):
            return await tools.sessions(limit)

    @server.resource(
        "ccxd://job/{job_id}/output",
        name="job-output",
        description="A job's output (stdout and stderr interleaved), as text.",
        mime_type="text/plain",
    )
    async def job_output(job_id: str) -> str:
        async with _told(ResourceError):
            return await tools.output(job_id)

    @server.resource(
        "ccxd://job/{job_id}/record",
        name="job-record",
        description="A job's whole record (command, state, exit, times, usage, Claude result) as JSON.",
        mime_type="application/json",
    )
    async def job_record(job_id: str) -> str:
        async with _told(ResourceError):
            return await tools.record(job_id)

    return server
