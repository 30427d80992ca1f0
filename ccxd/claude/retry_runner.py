"""Carrying out retry decisions: the next attempt of a failed Claude job.

When a Claude job finishes, :class:`RetryRunner` reads what went wrong
(:func:`failure_of`), asks :func:`~ccxd.claude.retry_policy.decide`, and — when
the answer is to retry — makes the next attempt as a new job linked to the
failed one (``retry_of``/``retried_by``, ``attempt``), queued with
``wait_until`` when it must wait.  The failed job's subscribers get
``job.retry`` before its ``job.finished``.

A usage limit blocks every Claude job of the daemon until the reset
(:meth:`ClaudeGate.block`).  The block and the attempts still waiting are saved
in the store (``Recorder.claude_state``), so after a restart the waits go on
with the same job ids (:meth:`RetryRunner.restore`).  The chain an attempt
belongs to (its first request and concision level) is kept on its job
(``Job.retry_base``), so a running attempt adopted after a crash keeps it too.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import structs

from ccxd.claude.gate import ClaudeGate
from ccxd.claude.monitor import monitor_of
from ccxd.claude.retry_policy import STALLED, Decision, Failure, RetrySettings, add_concision, decide
from ccxd.claude.shell_command import ShellClaude, recognise
from ccxd.config import Config
from ccxd.errors import JobError, RpcError
from ccxd.jobs.lifecycle import Lifecycle, LifecycleObserver
from ccxd.protocol import JobReason, JobRetry, StartParams
from ccxd.redact import REDACTED, is_secret_name
from ccxd.store.ops import ClaudeState, PendingAttempt

if TYPE_CHECKING:
    from ccxd.history.recorder import Recorder
    from ccxd.jobs.job import Job
    from ccxd.store.base import Store

__all__ = ["MAX_TOKENS_ENV", "Attempts", "RetryRunner", "failure_of", "settings_from_config"]

log = logging.getLogger("ccxd.claude")

MAX_TOKENS_ENV = "CLAUDE_CODE_MAX_OUTPUT_TOKENS"
_RESUME_FLAGS = frozenset({"--resume", "-r", "--continue", "-c"})
_PROMPT_FLAGS = frozenset({"-p", "--print"})


def settings_from_config(config: Config) -> RetrySettings:
    """The daemon-wide retry policy."""
    return RetrySettings(
        enabled=config.claude_retry,
        max_attempts=config.claude_retry_max_attempts,
        backoff_base=config.claude_retry_backoff_base,
        backoff_max=config.claude_retry_backoff_max,
        jitter=config.claude_retry_jitter,
        token_limit=config.claude_retry_token_limit,
        token_growth=config.claude_retry_token_growth,
        usage_limit_max_wait=config.claude_usage_limit_max_wait,
        usage_limit_margin=config.claude_usage_limit_margin,
        model_max_output_tokens=dict(config.claude_model_max_output_tokens),
    )


# -- reading a finished job ----------------------------------------------------


def failure_of(job: Job) -> Failure | None:
    """What went wrong with a finished Claude job, or None if nothing retryable to say.

    Reads the classification the stream-json parser attached (``monitor_of(job)``);
    a job ccxd killed for silence (idle timeout) counts as a stall.
    """
    if job.reason in (
        JobReason.CANCELLED,
        JobReason.FAILED_TO_START,
        JobReason.LOST,
        JobReason.TIMEOUT,
        JobReason.BUDGET_EXCEEDED,
    ):
        return None  # the user's or the daemon's own decision, not the API's
    run: Any = monitor_of(job)
    verdict: Any = getattr(run, "classification", None) if run is not None else None
    cls = getattr(verdict, "error_class", None)
    if job.reason is JobReason.IDLE_TIMEOUT and cls in (None, "no_result"):
        cls = STALLED  # ccxd's idle_timeout ended a silent process: a stall too
    if cls is None or cls == "hung_after_result":
        return None  # success (a CLI that hung after a good result was only ended late)
    facts: Any = getattr(run, "facts", None)
    retries = list(getattr(facts, "retries", ()) or ())
    shell: ShellClaude | None = getattr(run, "shell_command", None)  # a recognised shell string
    model = (
        getattr(facts, "model", None)
        or (shell.value_of("--model") if shell is not None else _flag_value(job.argv, "--model"))
        or getattr(job.params, "model", None)
    )
    tokens = shell.assigned(MAX_TOKENS_ENV) if shell is not None else None
    return Failure(
        error_class=str(cls),
        status=getattr(verdict, "status", None),
        model=model,
        max_output_tokens=_int(
            tokens or job.params.env.get(MAX_TOKENS_ENV) or os.environ.get(MAX_TOKENS_ENV)
        ),
        token_limit=getattr(verdict, "limit", None),
        resets_at=getattr(verdict, "reset_at", None),
        cli_last_delay=getattr(verdict, "retry_after", None),
        cli_retries=len(retries),
        resumes_session=_resumes(job),
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _resumes(job: Job) -> bool:
    if getattr(job.params, "resume", None) or getattr(job.params, "continue_session", None):
        return True
    monitor = monitor_of(job)
    shell = monitor.shell_command if monitor is not None else None
    if shell is not None:
        return shell.resumes
    return any(a in _RESUME_FLAGS or a.startswith(("--resume=", "--continue=")) for a in job.argv[1:])


def edit_prompt(
    params: StartParams, transform: Callable[[str], str], program: str = "claude"
) -> StartParams | None:
    """``params`` with its prompt transformed, or None when the prompt cannot be found.

    The prompt is the ``prompt`` member of a ``kind: "claude"`` request, the
    argument after ``-p``/``--print`` of a ``claude`` argv, the stdin input
    of a ``claude -p`` argv or shell string that has no prompt argument, or
    the literal word after ``-p`` of a recognised shell string (``program``:
    the configured CLI), re-quoted; every other byte of the string is kept.
    """
    prompt = getattr(params, "prompt", None)
    if isinstance(prompt, str):
        return structs.replace(params, prompt=transform(prompt))
    if isinstance(params.command, str):
        found = recognise(params.command, program) if params.kind is None else None
        if found is None:
            return None
        if found.prompt is None and params.input is not None:
            return structs.replace(params, input=transform(params.input))
        command = found.with_prompt(transform)
        return structs.replace(params, command=command) if command is not None else None
    if isinstance(params.command, list):
        argv = list(params.command)
        for i, arg in enumerate(argv[:-1]):
            if arg in _PROMPT_FLAGS and not argv[i + 1].startswith("-"):
                argv[i + 1] = transform(argv[i + 1])
                return structs.replace(params, command=argv)
        if params.input is not None and any(a in _PROMPT_FLAGS for a in argv):
            return structs.replace(params, input=transform(params.input))
    return None


def with_inline_env(params: StartParams, name: str, value: str, program: str = "claude") -> StartParams:
    """``params`` whose shell string's own ``name=...`` in front of ``claude`` says ``value``.

    The job's environment cannot override a variable the command line sets
    itself; other commands are returned as they are.
    """
    if not isinstance(params.command, str) or params.kind is not None:
        return params
    found = recognise(params.command, program)
    command = found.with_assigned(name, value) if found is not None else None
    return structs.replace(params, command=command) if command is not None else params


def without_session_id(params: StartParams) -> StartParams:
    """``params`` without a ``--session-id`` the caller chose: the CLI refuses an id already used.

    The next attempt then gets a fresh pre-assigned id, like any new run.
    """

    def strip(args: list[str]) -> list[str]:
        out: list[str] = []
        skip = False
        for arg in args:
            if skip:
                skip = False
            elif arg == "--session-id":
                skip = True
            elif not arg.startswith("--session-id="):
                out.append(arg)
        return out

    if isinstance(params.command, list) and "--session-id" in " ".join(params.command):
        params = structs.replace(params, command=[params.command[0], *strip(params.command[1:])])
    extra = getattr(params, "claude_args", None)
    if isinstance(extra, list) and "--session-id" in " ".join(extra):
        params = structs.replace(params, claude_args=strip(extra))
    return params


# -- the runner ----------------------------------------------------------------


class Attempts(Protocol):
    """What the runner needs of the supervisor: make and admit attempts, hear jobs, run error hooks."""

    lifecycle: Lifecycle

    def make_job(self, params: StartParams, peer: str = "", job_id: str | None = None) -> Job:
        """A job for ``params``, not admitted yet (``job_id``: a restored attempt's)."""

    def admit(self, job: Job) -> None:
        """Start or queue ``job``; a refusal raises."""

    def run_error_hooks(self, job: Job, event: str) -> None:
        """Run the error hooks of a finished job for ``event``."""


class RetryRunner(LifecycleObserver):
    """Makes the next attempt of failed Claude jobs and keeps the waits across restarts.

    It hears jobs start and end through the supervisor's lifecycle (it subscribes itself).
    """

    def __init__(
        self,
        sup: Attempts,
        gate: ClaudeGate,
        config: Config,
        recorder: Recorder | None = None,
        *,
        inspect: Callable[[Job], Failure | None] = failure_of,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sup = sup
        self.gate = gate
        self.config = config
        self.recorder = recorder
        self.inspect = inspect
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.clock = clock
        self._pending: dict[str, PendingAttempt] = {}
        sup.lifecycle.subscribe(self)
        gate.keepers.append(self.keeps)

    def settings_for(self, job: Job) -> RetrySettings:
        """The config's policy with the job's ``retry`` overrides."""
        base = settings_from_config(self.config)
        over = job.params.retry
        if over is None:
            return base
        return base.merged({f: getattr(over, f) for f in over.__struct_fields__})

    def keeps(self, job: Job) -> bool:
        """True for a waiting attempt whose saved record lets the next daemon queue it again."""
        pending = self._pending.get(job.id)
        return pending is not None and not pending.secret_env

    # -- events ---------------------------------------------------------------

    def job_started(self, job: Job) -> None:
        """A waiting attempt started: it no longer needs restoring after a restart."""
        if self._pending.pop(job.id, None) is not None:
            self._save()

    def job_ended(self, job: Job) -> None:
        """Decide about a finished job; make and admit its next attempt if retrying."""
        if self._pending.pop(job.id, None) is not None:
            self._save()
        if not self.gate.is_claude(job):
            return
        failure = self.inspect(job)
        if failure is None:
            return
        if job.lost_env:
            # Adopted after its leader ended: the values were nowhere to read back (adoption.py).
            held = ", ".join(job.lost_env)
            job.retry_note = f"not retried: its environment held {held}, which ccxd does not store"
            return
        # The chain lives on the job, so an adopted attempt keeps it (Job.retry_base).
        base = job.retry_base or job.params
        level = job.concision_level
        failure = structs.replace(
            failure,
            attempt=job.attempt,
            concision_level=level,
            can_edit_prompt=edit_prompt(base, lambda p: p, self.config.claude_program) is not None,
        )
        now = self.clock()
        decision = decide(self.settings_for(job), failure, now=now, rng=self.rng)
        log.info("job %s (attempt %d): %s", job.id, job.attempt, decision.reason)
        if not decision.retry:
            job.retry_note = "not retried: " + decision.reason
            if failure.attempt >= self.settings_for(job).max_attempts:
                self.sup.run_error_hooks(job, "retry_exhausted")
            return
        if decision.block_until is not None:
            self.gate.block(decision.block_until)
        try:
            nxt = self._next_attempt(job, base, decision, failure, now)
        except (JobError, RpcError) as exc:
            job.retry_note = f"not retried: {exc.message}"
            log.warning("job %s: next attempt refused: %s", job.id, exc.message)
        else:
            log.info("job %s: attempt %d is job %s", job.id, nxt.attempt, nxt.id)
        if decision.block_until is not None:
            self._save()

    def _next_attempt(
        self, job: Job, base: StartParams, decision: Decision, failure: Failure, now: float
    ) -> Job:
        params = base
        if decision.concision_level:
            level = decision.concision_level
            edited = edit_prompt(
                base, lambda p: add_concision(p, level, failure.token_limit), self.config.claude_program
            )
            params = edited or base
        env = dict(job.params.env)
        if decision.max_output_tokens is not None:
            env[MAX_TOKENS_ENV] = str(decision.max_output_tokens)
            params = with_inline_env(params, MAX_TOKENS_ENV, env[MAX_TOKENS_ENV], self.config.claude_program)
        # Subscribers follow the chain through job.retry; the attempt itself is not subscribed.
        params = without_session_id(structs.replace(params, env=env, subscribe=False))
        nxt = self.sup.make_job(params, job.peer)
        nxt.timeout, nxt.timeout_basis = job.timeout, job.timeout_basis
        nxt.timeout_silence = job.timeout_silence
        nxt.attempt = decision.attempt
        nxt.retry_of = job.id
        nxt.retry_note = decision.reason
        if decision.delay > 0:
            nxt.wait_until = now + decision.delay
            nxt.wait_reason = decision.wait_reason
        nxt.retry_base, nxt.concision_level = base, decision.concision_level
        job.retried_by = nxt.id
        job.retry_note = decision.reason
        job.retry_notice = JobRetry(
            job_id=job.id,
            next_job_id=nxt.id,
            attempt=decision.attempt,
            error_class=failure.error_class,
            reason=decision.reason,
            delay=decision.delay,
            wait_until=nxt.wait_until,
            max_output_tokens=decision.max_output_tokens,
            concision_level=decision.concision_level,
        )
        # Kept until it starts, so a restart in between does not lose it.
        self._pending[nxt.id] = _pending(nxt, base, decision.concision_level)
        self._save()
        try:
            self.sup.admit(nxt)
        except (JobError, RpcError):
            if self._pending.pop(nxt.id, None) is not None:
                self._save()
            job.retried_by = None
            job.retry_notice = None
            raise
        return nxt

    # -- persistence ----------------------------------------------------------

    def _save(self) -> None:
        if self.recorder is None:
            return
        now = self.clock()
        block = self.gate.block_until if self.gate.block_until and self.gate.block_until > now else None
        self.recorder.claude_state(
            ClaudeState(
                block_until=block,
                block_reason=self.gate.block_reason if block else None,
                pending=list(self._pending.values()),
            )
        )

    async def restore(self, store: Store) -> set[str]:
        """Take back the block and the waiting attempts a previous run saved.

        Returns the ids of the attempts queued again (the crash recovery must
        leave them alone).  An attempt whose environment held secrets is not
        restored (ccxd never stores them); it is recorded as lost instead.
        """
        state = await store.claude_state()
        if state is None:
            return set()
        now = self.clock()
        if state.block_until is not None and state.block_until > now:
            self.gate.block(state.block_until, state.block_reason or "usage limit")
        restored: set[str] = set()
        for p in state.pending:
            if p.secret_env:
                log.warning(
                    "job %s (attempt %d) cannot wait on after the restart: its environment held %s, "
                    "which ccxd does not store",
                    p.job_id,
                    p.attempt,
                    ", ".join(p.secret_env),
                )
                continue
            job = self.sup.make_job(p.params, p.peer, job_id=p.job_id)
            job.queued_at = p.queued_at or job.queued_at
            job.attempt, job.retry_of = p.attempt, p.retry_of
            job.wait_until, job.wait_reason = p.wait_until, p.wait_reason
            job.retry_note = "waiting again after a daemon restart"
            job.retry_base, job.concision_level = p.base_params, p.concision_level
            self._pending[job.id] = p
            try:
                self.sup.admit(job)
            except (JobError, RpcError) as exc:
                log.warning("job %s could not be queued again: %s", p.job_id, exc.message)
                self._pending.pop(job.id, None)
                continue
            restored.add(p.job_id)
            log.info("job %s (attempt %d) waits again until %s", p.job_id, p.attempt, _clock(p.wait_until))
        self._save()
        return restored


def _pending(job: Job, base: StartParams, level: int) -> PendingAttempt:
    secret = sorted(
        {k for k in job.params.env if is_secret_name(k)} | {k for k in base.env if is_secret_name(k)}
    )
    return PendingAttempt(
        job_id=job.id,
        params=structs.replace(job.params, env=_redacted(job.params.env)),
        base_params=structs.replace(base, env=_redacted(base.env)),
        attempt=job.attempt,
        retry_of=job.retry_of or "",
        concision_level=level,
        wait_until=job.wait_until,
        wait_reason=job.wait_reason,
        queued_at=job.queued_at,
        peer=job.peer,
        secret_env=secret,
    )


def _redacted(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}


def _clock(when: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when)) if when else "now"
