"""Making jobs from requests: each kind's shaping, checks, argv and shell, spool, limits, timeout.

New jobs, retry attempts and adopted jobs are all made here (:meth:`JobFactory.build`),
so each gets its kind's monitor and its limits the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from ccxd.cgroups.control import ResourceControl
from ccxd.config import Config
from ccxd.errors import InvalidRequest
from ccxd.jobs.job import Job
from ccxd.jobs.observer import JobKind
from ccxd.output.log import OutputLog
from ccxd.protocol import Limits, StartParams
from ccxd.redact import secret_values
from ccxd.supervision.engine import Engine
from ccxd.supervision.ids import new_job_id
from ccxd.supervision.requests import check_text, shell_name
from ccxd.supervision.shell import resolve_shell

if TYPE_CHECKING:
    from ccxd.history.recorder import Recorder

__all__ = ["JobFactory"]


class JobFactory:
    """Turns prepared requests into jobs of this daemon."""

    def __init__(
        self,
        config: Config,
        resources: ResourceControl,
        engine: Engine,
        jobs: Mapping[str, Job],
        recorder: Recorder | None,
    ) -> None:
        self.config = config
        self.resources = resources
        self.engine = engine
        """Whose spools new jobs write (pipes or shims)."""
        self.jobs = jobs
        self.recorder = recorder
        self.node = config.resolved_node_id()
        self.base_env = dict(os.environ)
        """The daemon's environment, which every job inherits."""
        self.base_secrets = secret_values(self.base_env)  # never shown in a job's record
        self.default_shell = resolve_shell(config.shell, fallback=True) or "/bin/sh"
        self.kinds: list[JobKind] = []
        """Job kinds (Claude) that shape requests and watch their jobs' output."""

    @property
    def home(self) -> str:
        """Where a job runs that names no ``cwd``."""
        return self.base_env.get("HOME", "/")

    def prepare(self, params: StartParams) -> StartParams:
        """``params`` as each kind shapes them; refused (INVALID_PARAMS) without a command."""
        try:
            for kind in self.kinds:
                params = kind.prepare(params)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if params.command is None:
            raise InvalidRequest('command is required (or kind: "claude" with a prompt)')
        return params

    def check(self, params: StartParams) -> StartParams:
        """``params`` prepared and checked as :meth:`make` checks them, no job made (InvalidRequest)."""
        params = self.prepare(params)
        check_text(params)
        self._argv(params)
        return params

    def _argv(self, params: StartParams) -> tuple[list[str], str | None]:
        """The argv and shell of prepared ``params``; refused when the shell asked for is not found."""
        if not isinstance(params.command, str):
            return list(params.command or ()), None
        wanted = params.shell or self.config.shell
        found = resolve_shell(shell_name(wanted), fallback=False) if params.shell is not None else None
        shell = self.default_shell if params.shell is None else found
        if shell is None:
            raise InvalidRequest(f"shell {wanted!r} not found")
        return [shell, "-c", params.command], shell

    def make(self, params: StartParams, peer: str, job_id: str | None = None, *, reused: bool = False) -> Job:
        """A job for ``params``, not admitted yet; ``reused``: ``job_id`` was an earlier run's."""
        params = self.prepare(params)
        check_text(params)
        job_id = job_id or new_job_id()
        argv, shell = self._argv(params)
        cwd = params.cwd or self.home
        # No spool makes a file here: it is made when the job first writes.
        spool = self.engine.new_spool(job_id, self.config.spool_max_bytes)
        out = OutputLog(self.config.buffer_size, spool)
        job = self.build(params, peer, job_id, argv, shell, cwd, out)
        job.reused_id = reused
        if params.worktree:  # a Claude retry runs in the tree of the attempt it retries
            job.worktree = next((j.worktree for j in self.jobs.values() if j.worktree and j.cwd == cwd), None)
            if job.worktree is not None:
                job.worktree = msgspec.structs.replace(job.worktree, head=None, diffstat=None, dirty=None)
        return job

    def build(
        self,
        params: StartParams,
        peer: str,
        job_id: str,
        argv: list[str],
        shell: str | None,
        cwd: str,
        out: OutputLog,
        limits: Limits | None = None,
    ) -> Job:
        """The one factory of jobs, new and adopted: limits, then each kind's ``made`` (its monitor).

        ``params`` are prepared already; ``limits``, when given, are those in force
        (an adopted job's, after pre-hooks), else they come from ``params``.
        """
        idle = params.idle_timeout if params.idle_timeout is not None else self.config.idle_timeout
        job = Job(
            job_id,
            params,
            argv=argv,
            shell=shell,
            cwd=cwd,
            log=out,
            node=self.node,
            peer=peer,
            timeout=None,
            idle_timeout=idle,
        )
        job.limits = limits if limits is not None else self.resources.limits_for(params)
        job.base_secrets = self.base_secrets
        for kind in self.kinds:
            kind.made(job)
        return job

    async def timeout_for(self, params: StartParams) -> tuple[float | None, str, float | None]:
        """The timeout, its basis, and its silence window when it is an estimate (a guard)."""
        if params.timeout == 0:
            return None, "none (timeout 0)", None
        if params.timeout is not None:
            return params.timeout, "explicit", None
        if self.recorder is None:
            c = self.config.default_timeout
            return c, "default_timeout" if c is not None else "none", None
        est = await self.recorder.timeout_for(params.command or "")
        return est.timeout, est.basis, est.silence
