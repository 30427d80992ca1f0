"""Claude jobs as a job kind: the supervisor's seam (:class:`~ccxd.jobs.observer.JobKind`).

``prepare`` builds the argv of ``kind: "claude"`` requests; ``made`` gives
every Claude job (``kind: "claude"``, an argv whose program is ``claude``, or a
shell string :func:`~ccxd.claude.shell_command.recognise` recognises) its
pre-assigned ``--session-id``, the configured API key (only when
``claude_api_key_file`` is set) and a :class:`ClaudeMonitor`.

A recognised shell string that would print text runs behind the text
renderer (``textview.py``): the CLI is asked for stream-json, which the
monitor follows in ``<spool>/<job>.claude``, and the job's stdout is the text
the CLI would have printed.  Only the command the shell runs (``job.argv``)
changes; the request (``job.params.command``) stays the user's.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ccxd.claude.budget import Budgets
from ccxd.claude.command import add_budget, add_session_id, claude_params, is_claude_argv, wants_events
from ccxd.claude.gate import is_claude_job
from ccxd.claude.monitor import ClaudeMonitor
from ccxd.claude.shell_command import ShellClaude, recognise
from ccxd.config import Config
from ccxd.errors import RpcError
from ccxd.protocol import ErrorCode, StartParams

if TYPE_CHECKING:
    from ccxd.jobs.job import Job

__all__ = ["ClaudeKind"]

log = logging.getLogger("ccxd.claude")

TEXTVIEW = Path(__file__).with_name("textview.py")
EVENTS_SUFFIX = ".claude"
"""A rendered job's stream-json: ``<job>.claude`` next to its spool (removed with it)."""


class ClaudeKind:
    """Shapes and watches Claude jobs."""

    def __init__(self, config: Callable[[], Config], budgets: Budgets | None = None) -> None:
        self.config = config
        self.budgets = budgets

    def prepare(self, params: StartParams) -> StartParams:
        """Build the argv of a ``kind: "claude"`` request; ValueError when incomplete.

        A Claude request is refused (``BUDGET_SPENT``) while a budget is spent and
        ``claude_budget_action`` is ``refuse``.
        """
        cfg = self.config()
        params = claude_params(params, cfg.claude_program, cfg.claude_skip_permissions)
        if self.budgets is not None and _claude_request(params, cfg.claude_program):
            over = self.budgets.refuses(time.time(), params.group)
            if over is not None:
                raise RpcError(
                    ErrorCode.BUDGET_SPENT,
                    f"Claude job refused: {over.reason} (claude_budget_action is refuse)",
                )
        return params

    def made(self, job: Job) -> None:
        """Session id, API key and monitor for a Claude job; other jobs are left alone.

        A shell command that runs ``claude`` (``claude -p ... | ...`` as
        cc_executor clients send) is only watched: its output is parsed and
        classified, nothing about it is changed.
        """
        cfg = self.config()
        if job.params.kind == "shell":
            return  # the caller said: not a Claude job, whatever the command
        if job.shell is not None and isinstance(job.params.command, str) and job.params.kind is None:
            found = recognise(job.params.command, cfg.claude_program)
            if found is not None:
                self._shell_job(job, found, cfg)
                return
        if not is_claude_job(job):
            words = _shell_words(job.params.command)
            if words and is_claude_argv(words):
                stall = job.params.stall_timeout
                job.kind_state = job.observer = ClaudeMonitor(
                    job,
                    structured=wants_events(words),
                    stall_timeout=stall if stall is not None else cfg.claude_stall_timeout,
                    exit_grace=cfg.claude_exit_grace,
                )
            return
        if job.params.kind != "claude":  # a claude argv: the request's budget goes on its command line
            job.argv = add_budget(job.argv, job.params.max_budget_usd)
        job.argv, session_id = add_session_id(job.argv)
        key = _api_key(cfg.claude_api_key_file)
        if key is not None:
            job.extra_env["ANTHROPIC_API_KEY"] = key
        stall = job.params.stall_timeout if job.params.stall_timeout is not None else cfg.claude_stall_timeout
        monitor = ClaudeMonitor(
            job,
            structured=wants_events(job.argv),
            stall_timeout=stall,
            exit_grace=cfg.claude_exit_grace,
            session_id=session_id,
        )
        job.kind_state = job.observer = monitor

    def _shell_job(self, job: Job, found: ShellClaude, cfg: Config) -> None:
        """A recognised shell string: a Claude job, rendered as text when it would print text."""
        assert job.shell is not None
        key = _api_key(cfg.claude_api_key_file)
        if key is not None:
            job.extra_env["ANTHROPIC_API_KEY"] = key
        stall = job.params.stall_timeout if job.params.stall_timeout is not None else cfg.claude_stall_timeout
        spool = job.log.spool
        if found.renders_text and spool is not None:
            events = spool.data_path.with_name(job.id + EVENTS_SUFFIX)
            session_id = None if found.own_session else str(uuid.uuid4())
            renderer = [sys.executable, "-I", "-S", str(TEXTVIEW), "--events", str(events), "--"]
            job.argv = [job.shell, "-c", found.rendered(renderer, session_id)]
            monitor = ClaudeMonitor(
                job,
                structured=True,
                stall_timeout=stall,
                exit_grace=cfg.claude_exit_grace,
                session_id=session_id,
                events_file=events,
                shell_command=found,
            )
        else:  # stream-json or json, as asked: nothing is changed
            monitor = ClaudeMonitor(
                job,
                structured=found.output_format == "stream-json",
                stall_timeout=stall,
                exit_grace=cfg.claude_exit_grace,
                shell_command=found,
            )
        job.kind_state = job.observer = monitor


def _claude_request(params: StartParams, program: str) -> bool:
    """The request makes a Claude job (as :func:`is_claude_job` will say of the job)."""
    if params.kind is not None:
        return params.kind == "claude"
    if isinstance(params.command, list):
        return is_claude_argv(params.command)
    return isinstance(params.command, str) and recognise(params.command, program) is not None


def _shell_words(command: str | list[str] | None) -> list[str]:
    if not isinstance(command, str):
        return []
    # Most commands are not claude at all: spare them shlex (a tenth of a job's start).
    if "claude" not in command.replace('"', "").replace("'", "").replace("\\", ""):
        return []
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    # `VAR=value claude ...` and `env VAR=value claude ...` run claude too.
    while words and (words[0] == "env" or ("=" in words[0] and words[0].split("=", 1)[0].isidentifier())):
        words = words[1:]
    return words


def _api_key(path: str) -> str | None:
    if not path:
        return None
    try:
        key = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        log.error("claude_api_key_file %s: %s; Claude jobs run without it", path, exc)
        return None
    return key or None
