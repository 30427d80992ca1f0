"""Built-in ``metrics`` hook: counts, durations and exit reasons per command signature.

Runs as a post hook (every job that ran) and as an error hook (only for jobs
that never ran: failed to start, cancelled while queued), so each finished job
is counted once.  Counters live in the store (Redis: ``ccxd:v1:metrics:*``), so
they survive restarts; ``ccxctl status`` shows them and the optional
``metrics_listen`` endpoint exports them in Prometheus text format.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ccxd.history.signature import signature
from ccxd.hooks.context import HookContext, HookResult
from ccxd.protocol import CommandMetrics
from ccxd.redact import redact_argv, redact_text, secret_values
from ccxd.store.ops import RecordMetric

__all__ = ["Metrics"]


class Metrics:
    """Records finished jobs through ``record`` and reads the counters through ``read``."""

    def __init__(
        self, record: Callable[[RecordMetric], None], read: Callable[[int], Awaitable[list[CommandMetrics]]]
    ) -> None:
        self.record = record
        self.read = read

    def _count(self, ctx: HookContext) -> HookResult:
        if ctx.dry_run:
            return HookResult.allow("dry run: nothing recorded")
        job = ctx.job
        if job is None or job.reason is None:
            return HookResult.allow("no finished job")
        # Signatures are shown (status, /metrics) and stored: never with a password in them.
        secrets = secret_values(ctx.env)
        command = ctx.command
        shown = redact_text(command, secrets) if isinstance(command, str) else redact_argv(command, secrets)
        sig = signature(shown)
        at = job.finished_at or time.time()
        self.record(RecordMetric(sig, job.reason.value, job.exit_code, job.duration or 0.0, at))
        return HookResult.allow(f"counted under {sig!r}")

    async def post_hook(self, ctx: HookContext) -> HookResult:
        """Count a job that ran."""
        return self._count(ctx)

    async def error_hook(self, ctx: HookContext) -> HookResult:
        """Count a job that never ran (the post hook counted the others)."""
        if ctx.job is not None and ctx.job.pid is not None:
            return HookResult.allow("counted by the post hook")
        return self._count(ctx)
