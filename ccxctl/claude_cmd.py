"""``ccxctl claude PROMPT``: run Claude Code as a ccxd job and show its plain result.

The argv is built by the daemon from the request's members (no shell quoting);
the job runs with ``--output-format stream-json`` so ccxd can classify it, and
people see the result text, not the JSON.  A job the daemon retries (``job.retry``)
is followed to its next attempt.
"""

from __future__ import annotations

import sys
import time

from msgspec import structs

from ccxctl.render import emit_event
from ccxd.client import Client
from ccxd.protocol import ClaudeEventNote, JobFinished, JobInfo, JobRetry, StartParams
from ccxd.protocol.claude_events import ApiRetry, Assistant, Init

__all__ = ["claude_job", "describe_claude"]


def describe_claude(job: JobInfo) -> str:
    """The failure of a Claude job in one line (class, words, reset time)."""
    c = job.claude
    if c is None:
        return "no claude information"
    text = "budget_exceeded" if job.reason == "budget_exceeded" else c.error_class or "failed"
    if c.error:
        text += f": {c.error}"
    if c.reset_at:
        text += " (resets " + time.strftime("%Y-%m-%d %H:%M", time.localtime(c.reset_at)) + ")"
    return text


def _note(event: ClaudeEventNote) -> str | None:
    ev = event.event
    if isinstance(ev, ApiRetry):
        return f"API retry {ev.attempt}: {ev.error} ({ev.error_status})"
    if isinstance(ev, Assistant) and ev.tool_uses:
        return "tool: " + ", ".join(t.name or "?" for t in ev.tool_uses)
    if isinstance(ev, Init):
        return f"session {ev.session_id} ({ev.model})"
    return None


async def claude_job(
    client: Client, params: StartParams, *, json_out: bool, verbose: bool, detach: bool
) -> int:
    """Start the job, follow it (and its retries), print the result; the exit code."""
    params = structs.replace(params, subscribe=not detach)
    info: JobInfo = await client.call("job.start", params, follow=not detach)
    if detach:
        print(info.id)
        return 0
    job_id = info.id
    stream = client.events(job_id)
    while True:
        retry: JobRetry | None = None
        finished: JobInfo | None = None
        async for ev in stream:
            if json_out:
                emit_event(ev)
            elif verbose and isinstance(ev, ClaudeEventNote):
                line = _note(ev)
                if line:
                    sys.stderr.write(f"ccxctl: [{job_id}] {line}\n")
                    sys.stderr.flush()
            if isinstance(ev, JobRetry):
                retry = ev
            elif isinstance(ev, JobFinished):
                finished = ev.job
        if finished is None:
            return 1
        if retry is not None:
            if not json_out:
                sys.stderr.write(
                    f"ccxctl: {describe_claude(finished)}; attempt {retry.attempt} is job {retry.next_job_id}"
                    + (f", waiting {retry.delay:.0f}s" if retry.delay else "")
                    + "\n"
                )
            job_id = retry.next_job_id
            stream = client.follow(job_id)
            continue
        return _show(finished, json_out)


def _show(job: JobInfo, json_out: bool) -> int:
    from ccxctl.runjob import exit_code_for

    if job.reason == "failed_to_start":  # no `claude` where the daemon looked, a bad cwd...
        if not json_out:
            sys.stderr.write(
                f"ccxctl: claude job {job.id} could not start: {job.error}"
                " (is Claude Code installed where ccxd looks? `claude_program` in ccxd.toml)\n"
            )
        return exit_code_for(job)
    c = job.claude
    ok = c is not None and c.error_class is None and c.ok is not False
    if not json_out:
        if c is not None and c.result is not None and ok:
            sys.stdout.write(c.result if c.result.endswith("\n") else c.result + "\n")
            sys.stdout.flush()
        if not ok:
            sys.stderr.write(f"ccxctl: claude job {job.id}: {describe_claude(job)}\n")
    if ok:
        return 0
    code = exit_code_for(job)
    return code if code else 1
