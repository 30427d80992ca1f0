"""Running hooks so that they always run, never hang a job, and say what they did.

Every call has a timeout; a hook that raises, hangs, prints garbage, exits
non-zero or is missing becomes an outcome (``failed`` or ``timeout``) handled by
its policy:

* ``pre_execution`` — default ``closed``: the job is refused (a guard that cannot
  answer must not wave a job through); ``open``: the job goes on.
* ``post_execution`` and ``error`` — default ``open``: the next hook runs;
  ``closed``: the remaining hooks of that point are skipped.

A timed-out Python hook is cancelled and abandoned (never awaited again), a
plain function keeps its thread until it returns, and a hook program is killed
with everything it started.

Plain functions run in threads, so one that blocks never holds up the daemon.
An ``async def`` hook runs on the event loop, where blocking (``time.sleep``,
a synchronous HTTP call) stops everything, watchdog pings included; that cannot
be interrupted, only seen: each step of the hook is timed (:func:`_timed`), and
one that held the loop longer than the hook's timeout counts as a ``timeout``
outcome saying so.  After ``hook_block_limit`` such times the hook is disabled
until the next reload (``hooks.list`` shows both).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import os
import time
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import msgspec

from ccxd.config import Config
from ccxd.errors import RpcError
from ccxd.hooks.command import HookFailure, from_json_answer, interpret, run_command
from ccxd.hooks.context import HookContext, HookResult, OutputSummary, make_context, output_summary
from ccxd.hooks.registry import BuiltinFactory, Registry
from ccxd.hooks.spec import HookSpec
from ccxd.jobs.job import Job
from ccxd.proc.reaper import Reaper
from ccxd.protocol import (
    ErrorCode,
    HookList,
    HookOutcome,
    HookPointName,
    HookTestParams,
    HookTestResult,
    JobInfo,
    JobReason,
    JobState,
    StartParams,
)

__all__ = ["ERROR_EVENTS", "HookRunner", "apply_update"]

log = logging.getLogger("ccxd.hooks")

ERROR_EVENTS = frozenset({"failed_to_start", "timeout", "idle_timeout", "oom", "cancelled", "killed"})
"""Job reasons that run the error hooks (``retry_exhausted`` is raised by whoever retries)."""

# A hook program gets this long beyond its timeout to be killed and reaped.
_KILL_SLACK = 3.0


class _TimedOut(Exception):
    pass


_T = TypeVar("_T")


class _LoopHold:
    """The longest time an async hook kept the event loop to itself in one step."""

    __slots__ = ("longest",)

    def __init__(self) -> None:
        self.longest = 0.0


@types.coroutine
def _timed(coro: Coroutine[Any, Any, _T], hold: _LoopHold) -> Generator[Any, Any, _T]:
    """Await ``coro``, timing each of its steps (from a resume to its next suspension) in ``hold``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        started = time.monotonic()
        try:
            yielded = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            hold.longest = max(hold.longest, time.monotonic() - started)
        try:
            value, error = (yield yielded), None
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation the task throws in: pass it on
            value, error = None, exc


def apply_update(params: StartParams, update: dict[str, Any]) -> StartParams:
    """``params`` with a hook's partial update applied and validated (``env`` is merged).

    Unknown fields are refused by ``job.start``'s own rules, so fields that other
    parts add later (limits, job kinds) work without changes here.
    """
    merged = msgspec.to_builtins(params)
    for key, value in update.items():
        if key == "env" and isinstance(value, dict):
            merged["env"] = {**merged.get("env", {}), **value}
        else:
            merged[key] = value
    return msgspec.convert(merged, StartParams)


class HookRunner:
    """Runs the loaded hooks at each point; the supervisor's only way to hooks."""

    def __init__(self, config: Config, reaper: Reaper, builtins: BuiltinFactory | None = None) -> None:
        self.reaper = reaper
        self.registry = Registry(config, builtins)
        self.registry.load()
        # Plain-function hooks run here, never on the event loop.
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="ccxd-hook")
        self._abandoned: set[asyncio.Task[HookResult]] = set()
        self.runs: collections.Counter[tuple[str, str]] = collections.Counter()
        """Outcomes since start, by (hook name, result), for the metrics endpoint."""

    # -- registry -------------------------------------------------------------

    def reload(self) -> None:
        """Load the hooks again (SIGHUP)."""
        self.registry.load()

    def describe(self) -> HookList:
        """Loaded hooks, for ``hooks.list``."""
        return self.registry.describe()

    def names(self) -> list[str]:
        """``point:name`` of every loaded hook."""
        return [f"{s.point}:{s.name}" for s in self.registry.all]

    def close(self) -> None:
        """Stop the hook threads (threads still running a hook are left to finish)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- calling one hook -----------------------------------------------------

    async def _invoke(self, spec: HookSpec, ctx: HookContext, timeout: float, hold: _LoopHold) -> HookResult:
        if spec.command is not None:
            home = os.environ.get("HOME", "/")
            cwd = ctx.cwd if ctx.cwd and os.path.isdir(ctx.cwd) else home
            env = dict(os.environ)
            # Not CCXD_JOB_ID: that marks the job's own processes for killing.
            env.update(
                CCXD_HOOK_POINT=ctx.point,
                CCXD_HOOK_NAME=spec.name,
                CCXD_HOOK_JOB_ID=ctx.job_id,
                CLAUDE_PROJECT_DIR=cwd,
            )
            payload = msgspec.json.encode(ctx)
            reply = await run_command(spec.command, cwd, env, payload, timeout, self.reaper)
            if reply.timed_out:
                raise _TimedOut
            return interpret(reply)
        func = spec.func
        assert func is not None
        if inspect.iscoroutinefunction(func):
            value: Any = await _timed(func(ctx), hold)
        else:
            value = await asyncio.get_running_loop().run_in_executor(self._threads, func, ctx)
            if inspect.isawaitable(value):
                value = await value
        return _as_result(value)

    async def _call(self, spec: HookSpec, ctx: HookContext) -> tuple[HookOutcome, HookResult | None]:
        """Run one hook; the result is None when it failed or timed out."""
        timeout = self.registry.timeout(spec)
        policy = self.registry.policy(spec)
        started = time.monotonic()
        hold = _LoopHold()
        task = asyncio.get_running_loop().create_task(self._invoke(spec, ctx, timeout, hold))
        budget = timeout + (_KILL_SLACK if spec.command is not None else 0.0)
        done, _ = await asyncio.wait({task}, timeout=budget)
        duration = round(time.monotonic() - started, 6)

        def outcome(result: Any, message: str, failed: bool = False) -> HookOutcome:
            return HookOutcome(
                name=spec.name,
                point=spec.point,
                result=result,
                duration=duration,
                message=message,
                policy=policy if failed else None,
            )

        if not done:
            # Never await a hook past its timeout: cancel it and let it go.
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._forget)
        if hold.longest > timeout:
            return outcome("timeout", self._blocked_loop(spec, hold.longest, timeout), True), None
        if not done:
            log.warning("hook %s (%s) timed out after %.3gs", spec.name, spec.point, timeout)
            return outcome("timeout", f"no answer within {timeout:g}s", True), None
        exc = task.exception()
        if isinstance(exc, _TimedOut):
            log.warning("hook %s (%s) timed out after %.3gs", spec.name, spec.point, timeout)
            return outcome("timeout", f"no answer within {timeout:g}s; killed", True), None
        if isinstance(exc, HookFailure):
            log.warning("hook %s (%s) failed: %s", spec.name, spec.point, exc)
            return outcome("failed", str(exc), True), None
        if exc is not None:
            log.warning("hook %s (%s) raised %s: %s", spec.name, spec.point, type(exc).__name__, exc)
            return outcome("failed", f"raised {type(exc).__name__}: {exc}", True), None
        result = task.result()
        return outcome("ok", result.message), result

    def _blocked_loop(self, spec: HookSpec, seconds: float, timeout: float) -> str:
        """Count a hook that held the event loop past its timeout; what its outcome says."""
        times, disabled = self.registry.blocked_loop(spec, seconds)
        limit = self.registry.config.hook_block_limit
        message = (
            f"blocked the event loop for {seconds:.1f}s (its timeout is {timeout:g}s): "
            "an async hook must never block; use asyncio or a plain function"
        )
        if disabled:
            message += f"; disabled after {times} times until the hooks are reloaded"
        elif limit:
            message += f"; {times} of {limit} times before it is disabled"
        log.warning("hook %s (%s) %s", spec.name, spec.point, message)
        return message

    def _forget(self, task: asyncio.Task[HookResult]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise

    # -- pre ------------------------------------------------------------------

    async def pre(
        self, params: StartParams, job_id: str, peer: str = ""
    ) -> tuple[StartParams, list[HookOutcome], dict[str, Any]]:
        """Run the pre hooks: the params to start with, the outcomes, the annotations.

        Raises :class:`RpcError` ``HOOK_REFUSED`` when a hook blocks, or fails under ``closed``.
        """
        specs = self.registry.at("pre_execution")
        if not specs:
            return params, [], {}
        outcomes: list[HookOutcome] = []
        notes: dict[str, Any] = {}
        for spec in specs:
            ctx = make_context("pre_execution", params, job_id, peer=peer)
            if not spec.matcher.matches(ctx):
                continue
            out, result = await self._call(spec, ctx)
            outcomes.append(out)
            params, refusal = self._apply_pre(spec, out, result, params, notes)
            self.runs[spec.name, out.result] += 1
            if refusal is not None:
                log.info("job %s refused by hook %s: %s", job_id, spec.name, refusal)
                raise RpcError(
                    ErrorCode.HOOK_REFUSED,
                    f"refused by hook {spec.name}: {refusal}",
                    {"hook": spec.name, "reason": refusal, "hooks": msgspec.to_builtins(outcomes)},
                )
        return params, outcomes, notes

    def _apply_pre(
        self,
        spec: HookSpec,
        out: HookOutcome,
        result: HookResult | None,
        params: StartParams,
        notes: dict[str, Any],
    ) -> tuple[StartParams, str | None]:
        """Apply one pre hook's answer to ``params``; the refusal reason, if any."""
        if result is not None and result.update:
            try:
                new = apply_update(params, result.update)
            except msgspec.ValidationError as exc:
                out.result, out.message = "failed", f"invalid update: {exc}"
                out.policy = self.registry.policy(spec)
                result = None
            else:
                changed = sorted(
                    k for k in result.update if getattr(new, k, None) != getattr(params, k, None)
                )
                if changed:
                    out.result = "changed"
                    out.message = out.message or "changed " + ", ".join(changed)
                params = new
        if result is None:
            if out.policy == "closed":
                return params, f"hook {out.result}: {out.message} (policy closed)"
            return params, None
        if result.block:
            out.result, out.message = "blocked", result.reason or "blocked"
            return params, out.message
        if result.annotations:
            notes.update(result.annotations)
            if out.result == "ok":
                out.result = "annotated"
        return params, None

    # -- post and error -------------------------------------------------------

    async def finished(self, job: Job) -> None:
        """After a job ended: post hooks if it ran, then error hooks if it failed."""
        if job.pid is not None and self.registry.at("post_execution"):
            await self._run_point(job, "post_execution", None)
        reason = job.reason.value if job.reason is not None else None
        if reason in ERROR_EVENTS and self.registry.at("error"):
            await self._run_point(job, "error", reason)

    async def error(self, job: Job, event: str) -> None:
        """Run the error hooks for ``event`` (e.g. ``retry_exhausted``)."""
        if self.registry.at("error"):
            await self._run_point(job, "error", event)

    async def _run_point(self, job: Job, point: HookPointName, event: str | None) -> None:
        summary: OutputSummary | None = None
        for spec in self.registry.at(point):
            if summary is None:
                summary = output_summary(job.log)
            ctx = make_context(
                point,
                job.params,
                job.id,
                peer=job.peer,
                cwd=job.cwd,
                job=job.info(),
                output=summary,
                error=event,
            )
            if not spec.matcher.matches(ctx):
                continue
            out, result = await self._call(spec, ctx)
            notes: dict[str, Any] = {}
            if result is not None:
                if result.annotations:
                    notes = dict(result.annotations)
                    out.result = "annotated"
                if result.block or result.update:
                    out.message = (
                        out.message + "; " if out.message else ""
                    ) + "block/update ignored after exit"
            self.runs[spec.name, out.result] += 1
            job.add_hook_outcome(out, notes)
            if result is None and out.policy == "closed":
                break

    # -- dry run --------------------------------------------------------------

    async def test(self, p: HookTestParams) -> HookTestResult:
        """Run one hook against a pretend job (``hooks.test``); nothing is started."""
        found = [s for s in self.registry.all if s.name == p.name and (p.point is None or s.point == p.point)]
        if not found:
            loaded = ", ".join(self.names()) or "none"
            raise RpcError(ErrorCode.INVALID_PARAMS, f"no hook named {p.name!r} (loaded: {loaded})")
        if len(found) > 1:
            points = ", ".join(s.point for s in found)
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"hook {p.name!r} is loaded at several points ({points}); give point",
            )
        spec = found[0]
        params = StartParams(command=p.command, cwd=p.cwd, env=p.env, session=p.session, tags=p.tags)
        job_id = "dry-run"
        if spec.point == "pre_execution":
            ctx = make_context("pre_execution", params, job_id, dry_run=True)
        else:
            now = time.time()
            info = JobInfo(
                id=job_id,
                state=JobState.FINISHED,
                command=p.command,
                cwd=p.cwd or "",
                env=dict(p.env),
                session=p.session,
                tags=list(p.tags),
                reason=p.reason,
                exit_code=p.exit_code if p.reason is JobReason.EXITED else None,
                queued_at=now,
                started_at=now,
                finished_at=now,
                duration=0.0,
            )
            event = p.reason.value if p.reason.value in ERROR_EVENTS else "failed_to_start"
            ctx = make_context(
                spec.point,
                params,
                job_id,
                job=info,
                output=OutputSummary(),
                error=event if spec.point == "error" else None,
                dry_run=True,
            )
        if not spec.matcher.matches(ctx):
            return HookTestResult(matched=False)
        out, result = await self._call(spec, ctx)
        if spec.point != "pre_execution":
            notes = dict(result.annotations) if result is not None else {}
            if notes:
                out.result = "annotated"
            return HookTestResult(matched=True, outcome=out, annotations=notes)
        notes = {}
        new, refusal = self._apply_pre(spec, out, result, params, notes)
        before, after = msgspec.to_builtins(params), msgspec.to_builtins(new)
        changes = {k: v for k, v in after.items() if before.get(k) != v}
        return HookTestResult(
            matched=True, outcome=out, refused=refusal is not None, changes=changes, annotations=notes
        )


def _as_result(value: object) -> HookResult:
    if value is None:
        return HookResult()
    if isinstance(value, HookResult):
        return value
    if isinstance(value, dict):
        return from_json_answer(value)
    raise HookFailure(f"returned {type(value).__name__}, expected HookResult, dict or None")
