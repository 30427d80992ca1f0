"""One job: its request, its state and its output, as the supervisor keeps them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ccxd.jobs.priority import priority_value
from ccxd.jobs.state import check_transition
from ccxd.output.log import OutputLog
from ccxd.proc.tree import ProcessTree
from ccxd.protocol import (
    HookOutcome,
    JobInfo,
    JobReason,
    JobRetry,
    JobState,
    Limits,
    StartParams,
    Usage,
    WorktreeInfo,
)
from ccxd.redact import REDACTED, is_secret_name, redact_argv, redact_text, secret_values

if TYPE_CHECKING:
    from ccxd.cgroups.base import JobCgroup
    from ccxd.jobs.extension import KindState
    from ccxd.jobs.observer import JobObserver

__all__ = ["Job"]


class Job:
    """A job and everything that changes about it.

    Nothing here assumes the job's process is a child of this daemon: the
    process is known by pid, pgid and its tree, so a later daemon can adopt it.
    """

    def __init__(
        self,
        job_id: str,
        params: StartParams,
        *,
        argv: list[str],
        shell: str | None,
        cwd: str,
        log: OutputLog,
        node: str,
        peer: str,
        timeout: float | None,
        idle_timeout: float | None,
    ) -> None:
        self.id = job_id
        self.params = params
        self.argv = argv
        self.shell = shell
        self.cwd = cwd
        self.log = log
        self.node = node
        self.peer = peer
        self.timeout = timeout
        self.timeout_basis: str | None = None
        self.timeout_silence: float | None = None  # set: the timeout is a guard (deadline.py)
        self.idle_timeout = idle_timeout
        self.state = JobState.QUEUED
        self.reason: JobReason | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.error: str | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.tree: ProcessTree | None = None
        self.shim_pid: int | None = None  # the job's shim, when it runs under one (adoptable)
        self.adopted = False  # started by an earlier daemon
        self.reused_id = False  # a restored job's id: files of its earlier run may be left
        self.queued_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.started_mono: float | None = None
        self.finished_mono: float | None = None
        self.last_output_mono = time.monotonic()
        self.stop_reason: JobReason | None = None  # why *we* are stopping it
        self.stop_note: str | None = None  # said in the record's error (a guard's timeout)
        self.queue_position: int | None = None
        self.queue_groups: tuple[str, ...] = ()  # its queue groups, implicit ones too (queue.py)
        self.queue_wait: str | None = None  # what the queue holds it for (in wait_reason)
        self.stored_ends: dict[str, JobInfo] = {}  # jobs it waits for that only the store knows
        # Retry chains (Claude jobs): see ccxd/claude/retry_runner.py.
        self.attempt = 1
        self.retry_of: str | None = None
        self.retried_by: str | None = None
        self.retry_note: str | None = None
        self.wait_until: float | None = None  # not before then (epoch seconds)
        self.wait_reason: str | None = None
        self.retry_notice: JobRetry | None = None  # sent as job.retry before job.finished
        self.retry_base: StartParams | None = None  # the chain's first request (None: this job's params)
        self.concision_level = 0  # how hard this attempt's prompt asks for a short answer
        self.lost_env: list[str] = []  # secret variables an adopting daemon could not read back
        # Resources (ccxd/cgroups): limits may be changed by pre-hooks until launch.
        self.limits: Limits | None = None
        self.group: JobCgroup | None = None
        self.usage: Usage | None = None
        self.stats_seq = 0
        self.admission_wait: str | None = None  # the admit_* threshold it waits for (in wait_reason)
        self.hooks: list[HookOutcome] = []  # what each hook did, in order
        self.annotations: dict[str, Any] = {}  # notes hooks added
        # Job kinds (ccxd/jobs/observer.py): more environment, an output observer, their own record.
        self.extra_env: dict[str, str] = {}
        self.observer: JobObserver | None = None
        self.kind_state: KindState | None = None  # a Claude job's monitor (ccxd/jobs/extension.py)
        self.base_secrets: frozenset[str] = frozenset()  # the daemon's own secret values (redact.py)
        self.worktree: WorktreeInfo | None = None  # the git worktree it runs in (ccxd/worktree/)
        self._listeners: list[Callable[[], None]] = []
        log.add_listener(self._on_output)

    # -- state ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the job has reached its final state."""
        return self.state is JobState.FINISHED

    @property
    def active(self) -> bool:
        """True while the job has (or may have) processes."""
        return self.state in (JobState.STARTING, JobState.RUNNING, JobState.PAUSED)

    def move(self, new: JobState) -> None:
        """Change state (checked against the state machine) and tell listeners."""
        self.state = check_transition(self.state, new)
        self.notify()
        if new is JobState.FINISHED and not self._listeners:
            self.log.release_memory()  # nobody follows it: its output is read from the spool

    def finish(
        self,
        reason: JobReason,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record the outcome and become finished."""
        self.settle(reason, exit_code=exit_code, signal=signal, error=error)
        self.move(JobState.FINISHED)

    def settle(
        self,
        reason: JobReason,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record the outcome and close the output, but stay unfinished (post hooks run next)."""
        self.reason = reason
        self.exit_code = exit_code
        self.signal = signal
        self.error = error
        self.finished_at = time.time()
        self.finished_mono = time.monotonic()
        self.queue_position = None
        if not self.log.closed:
            self.log.close()

    def add_hook_outcome(self, outcome: HookOutcome, annotations: dict[str, Any] | None = None) -> None:
        """Record what a hook did (subscribers get it as a ``hook.*`` notification)."""
        self.hooks.append(outcome)
        if annotations:
            self.annotations.update(annotations)
        self.notify()

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or until now while running)."""
        if self.started_mono is None:
            return None
        end = self.finished_mono if self.finished_mono is not None else time.monotonic()
        return round(end - self.started_mono, 6)

    # -- listeners ------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every state change and every output chunk."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)
        if self.finished and not self._listeners:
            self.log.release_memory()  # the last follower of a finished job is gone

    def waiting_changed(self) -> None:
        """Tell listeners that ``wait_until``/``wait_reason`` changed."""
        self.notify()

    def _on_output(self) -> None:
        self.last_output_mono = time.monotonic()
        self.notify()

    def notify(self) -> None:
        """Tell listeners that something they show changed (a wait, a queue position, a cut)."""
        for cb in list(self._listeners):
            cb()

    # -- views ----------------------------------------------------------------

    def secrets(self) -> frozenset[str]:
        """Values never to show, log or store: the secret-named variables of the job and the daemon."""
        return secret_values(self.params.env) | self.base_secrets

    def shown_argv(self, secrets: frozenset[str] | None = None) -> list[str]:
        """``argv`` as it may be shown or logged (:func:`ccxd.redact.redact_argv`)."""
        return redact_argv(self.argv, self.secrets() if secrets is None else secrets)

    def info(self) -> JobInfo:
        """The job as clients see it (and as it is stored and logged): secrets redacted."""
        log = self.log
        secrets = self.secrets()
        command = self.params.command if self.params.command is not None else self.argv
        shown = redact_text(command, secrets) if isinstance(command, str) else redact_argv(command, secrets)
        env = self.params.env
        return JobInfo(
            id=self.id,
            state=self.state,
            command=shown,
            shell=self.shell,
            argv=self.shown_argv(secrets),
            cwd=self.cwd,
            env={k: REDACTED if is_secret_name(k) else redact_text(v, secrets) for k, v in env.items()},
            session=self.params.session,
            tags=self.params.tags,
            timeout=self.timeout,
            timeout_basis=self.timeout_basis,
            timeout_silence=self.timeout_silence,
            idle_timeout=self.idle_timeout,
            reason=self.reason,
            exit_code=self.exit_code,
            signal=self.signal,
            error=redact_text(self.error, secrets) if self.error else self.error,
            pid=self.pid,
            pgid=self.pgid,
            queue_position=self.queue_position,
            queued_at=self.queued_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration=self.duration,
            stdout_bytes=log.stream_bytes[0],
            stderr_bytes=log.stream_bytes[1],
            output_bytes=log.size,
            output_cut=log.cut,
            output_lost=log.spool.error if log.spool is not None else None,
            node=self.node,
            peer=self.peer,
            attempt=self.attempt,
            retry_of=self.retry_of,
            retried_by=self.retried_by,
            retry_note=self.retry_note,
            wait_until=self.wait_until,
            wait_reason=self.wait_reason,
            group=self.params.group,
            priority=priority_value(self.params.priority),
            after=self.params.after,
            after_any=self.params.after_any,
            limits=self.limits,
            limits_unenforced=list(self.group.unenforced) if self.group is not None else [],
            usage=self.usage,
            cgroup=self.group.path if self.group is not None else None,
            hooks=list(self.hooks),
            annotations=dict(self.annotations),
            worktree=self.worktree,
            **(self.kind_state.info_fields() if self.kind_state is not None else {}),
        )
