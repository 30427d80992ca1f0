"""The per-job Claude monitor: follows a Claude job's output as the supervisor reads it.

It is the thin I/O layer over the sans-I/O parser and classifier: the
supervisor hands it every output chunk (:meth:`ClaudeMonitor.output`) and
tells it when the process exited (:meth:`ClaudeMonitor.exited`, before the job
is marked finished), and it

* parses stdout as stream-json, keeps :class:`RunFacts` and a bounded list of
  encoded ``claude.event`` notifications for subscribers (:meth:`events_after`);
  a shell-string job whose stdout is rendered as text (``textview.py``) has
  its stream-json in an events file instead, read as it grows;
* keeps ``job.info().claude`` (:class:`ClaudeInfo`) current;
* ends a *stalled* job (no event for ``stall_timeout`` seconds) and a job whose
  process is still alive ``exit_grace`` seconds after its ``result`` event (a
  known CLI hang), through the ``stop`` callback;
* ends a job whose reported cost passed its ``max_budget_usd`` (a safety net
  behind the CLI's own ``--max-budget-usd``), and names the outcome of either
  ``budget_exceeded``;
* classifies the outcome when the process is gone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import structs

from ccxd.claude.classify import Classification, RunFacts, classify
from ccxd.claude.stream import StreamJsonParser
from ccxd.output.log import Chunk
from ccxd.protocol import ClaudeEventNote, ClaudeInfo, JobReason, Notification, encode
from ccxd.protocol.claude_events import ClaudeEvent, Init, Result

if TYPE_CHECKING:
    from ccxd.claude.shell_command import ShellClaude
    from ccxd.jobs.job import Job

__all__ = ["RESULT_KEEP", "ClaudeMonitor", "monitor_of"]

log = logging.getLogger("ccxd.claude")

RESULT_KEEP = 1 << 20
"""Result text kept in the job record (the whole text is in the job's output)."""
_EVENTS_KEPT = 4096
_EVENT_BYTES_KEPT = 16 << 20  # encoded events kept for subscribers (late ones get the output instead)
_STDERR_TAIL = 8192
EVENTS_POLL = 0.2
"""Seconds between looks at a rendered job's events file (a stat; a read only when it grew)."""


def monitor_of(job: Job) -> ClaudeMonitor | None:
    """The monitor of a Claude job (its ``kind_state``), None for other jobs."""
    state = job.kind_state
    return state if isinstance(state, ClaudeMonitor) else None


class ClaudeMonitor:
    """Everything ccxd learns from one Claude job while it runs."""

    def __init__(
        self,
        job: Job,
        *,
        structured: bool,
        stall_timeout: float | None,
        exit_grace: float,
        session_id: str | None = None,
        max_line: int | None = None,
        events_file: Path | None = None,
        shell_command: ShellClaude | None = None,
    ) -> None:
        """Watch ``job``; its stream-json is on stdout, or in ``events_file`` (stdout is text).

        ``shell_command``: the recognised shell string of a shell Claude job.
        """
        self.job = job
        self.events_file = events_file
        self.shell_command = shell_command
        self._events_fd = -1
        self._events_pos = 0
        self._poll: asyncio.TimerHandle | None = None
        self.structured = structured
        self.stall_timeout = stall_timeout if structured else None
        self.exit_grace = exit_grace
        self._stop: Callable[[JobReason], None] = lambda reason: None
        self.parser = StreamJsonParser(max_line) if max_line else StreamJsonParser()
        self.facts = RunFacts()
        self.facts.session_id = session_id
        self.classification: Classification | None = None
        self.info = ClaudeInfo(session_id=session_id)
        self.stalled = False
        self.ended_after_result = False
        self.max_budget_usd: float | None = getattr(job.params, "max_budget_usd", None)
        self.over_budget = False
        self.last_event_mono = time.monotonic()
        self._stderr = bytearray()
        self._events: collections.deque[tuple[int, bytes]] = collections.deque()
        self._event_bytes = 0
        self.next_seq = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._closed = False
        self._broken = False

    # -- called by the supervisor ---------------------------------------------

    def started(self, stop: Callable[[JobReason], None], since: float | None = None) -> None:
        """The process runs: start watching for a stall; ``stop`` ends the job.

        ``since``: the job's last output (an adopted job), where the stall timer starts.
        """
        self._stop = stop
        now = time.monotonic()
        if since is not None and self.events_file is not None:
            # A rendered job's events go to their file, not to its output: its last write counts too.
            with contextlib.suppress(OSError):
                since = max(since, now - (time.time() - os.stat(self.events_file).st_mtime))
        self.last_event_mono = now if since is None else min(since, now)
        if self.stall_timeout is not None:
            self._arm_stall(max(0.0, self.stall_timeout - (now - self.last_event_mono)))
        if self.events_file is not None:
            self._poll_events()

    def output(self, stream: int, chunk: Chunk) -> None:
        """A chunk of the job's output (stream 0 stdout, 1 stderr)."""
        if stream == 1:
            self._stderr += chunk.data
            del self._stderr[:-_STDERR_TAIL]
            return
        if self.events_file is not None:
            self._follow()  # the text comes after the result event that made it
            return
        if self._broken:
            return
        try:
            for event in self.parser.feed(chunk.data):
                self._take(event, chunk.end)
        except Exception:  # never let a parsing bug disturb the job's output
            log.exception("job %s: claude stream parsing failed; no more events", self.job.id)
            self._broken = True
            self.stall_timeout = None

    def exited(self, exit_code: int | None, signal: int | None) -> None:
        """The process is gone and its output read: classify (before the job finishes)."""
        if self._closed:
            return
        if self.events_file is not None:
            self._follow()
            self._close_events()
        self._closed = True
        for event in self.parser.flush():
            self._take(event, self.job.log.size)
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        facts = self.facts
        if self.structured or facts.result is not None:
            verdict = classify(
                facts,
                stalled=self.stalled,
                ended_after_result=self.ended_after_result,
                stderr_tail=self._stderr.decode("utf-8", "replace"),
                now=time.time(),
            )
        else:
            verdict = self._classify_text(exit_code == 0 and signal is None)
        if self.over_budget and verdict.error_class != "max_budget":
            cost = self.info.cost_usd or 0.0
            words = f"cost ${cost:.4f} passed the budget ${self.max_budget_usd:g}"
            verdict = Classification(error_class="max_budget", message=words)
        if verdict.error_class == "max_budget":
            # The process is gone: stopping it now only names the outcome (the CLI's own flag, or ours).
            self._stop(JobReason.BUDGET_EXCEEDED)
        self.classification = verdict
        self.info.error_class = verdict.error_class
        self.info.error = verdict.message if verdict.error_class else None
        self.info.api_status = verdict.status
        self.info.reset_at = verdict.reset_at
        self.info.retry_after = verdict.retry_after
        self.info.token_limit = verdict.limit
        if verdict.error_class:
            log.info("job %s: claude %s: %s", self.job.id, verdict.error_class, verdict.message)

    # -- subscribers ----------------------------------------------------------

    def events_after(self, seq: int, after: int, upto: int | None) -> tuple[list[bytes], int]:
        """Encoded ``claude.event`` notifications from ``seq`` on whose offset is in (after, upto].

        Returns them and the next seq to ask for (``upto`` None: no upper
        bound).  Events that fell out of the kept window are skipped (their
        lines are in the job's output).
        """
        out: list[bytes] = []
        first = self.next_seq - len(self._events)
        seq = max(seq, first)
        while seq < self.next_seq:
            offset, wire = self._events[seq - first]
            if upto is not None and offset > upto:
                break
            if offset > after or offset == after == 0:  # a rendered job's events may come before output
                out.append(wire)
            seq += 1
        return out, seq

    def snapshot(self) -> ClaudeInfo:
        """A copy of what is known so far, for the job record."""
        return structs.replace(self.info)

    def info_fields(self) -> dict[str, Any]:
        """Its part of the job record (``KindState``): ``claude``."""
        return {"claude": self.snapshot()}

    # -- internals ------------------------------------------------------------

    def _take(self, event: ClaudeEvent, offset: int) -> None:
        self.facts.observe(event)
        self.last_event_mono = time.monotonic()
        info = self.info
        info.events = self.facts.events
        info.api_retries = len(self.facts.retries)
        if isinstance(event, Init):
            info.session_id = event.session_id or info.session_id
            info.model = event.model
        elif isinstance(event, Result):
            self._take_result(event)
        note = ClaudeEventNote(job_id=self.job.id, seq=self.next_seq, offset=offset, event=event)
        wire = encode(Notification(method="claude.event", params=note))
        self._events.append((offset, wire))
        self._event_bytes += len(wire)
        while len(self._events) > _EVENTS_KEPT or (
            self._event_bytes > _EVENT_BYTES_KEPT and len(self._events) > 1
        ):
            self._event_bytes -= len(self._events.popleft()[1])
        self.next_seq += 1

    def _take_result(self, res: Result) -> None:
        info = self.info
        info.session_id = res.session_id or info.session_id
        info.ok = not res.is_error and res.subtype in (None, "success")
        text = res.result
        if text is not None and len(text) > RESULT_KEEP:
            text, info.result_truncated = text[:RESULT_KEEP], True
        info.result = text
        info.cost_usd = res.total_cost_usd
        if res.usage is not None:
            info.input_tokens = res.usage.input_tokens
            info.output_tokens = res.usage.output_tokens
            info.cache_read_tokens = res.usage.cache_read_input_tokens
            info.cache_creation_tokens = res.usage.cache_creation_input_tokens
        info.turns = res.num_turns
        info.duration_api_ms = res.duration_api_ms
        info.terminal_reason = res.terminal_reason
        budget = self.max_budget_usd
        cost = res.total_cost_usd
        if budget is not None and cost is not None and cost > budget and not self.over_budget:
            self.over_budget = True
            if res.subtype != "error_max_budget_usd" and not self._closed:
                log.info(
                    "job %s: claude cost $%.4f passed its budget $%g; ending it",
                    self.job.id,
                    cost,
                    budget,
                )
                self._stop(JobReason.BUDGET_EXCEEDED)
        if not self._closed:
            self._later(self.exit_grace, self._hung_after_result)

    def _classify_text(self, exited_ok: bool) -> Classification:
        # Plain text or json output: no events to go on, only the exit and the words.
        text = self._stderr.decode("utf-8", "replace")
        from_text = classify(self.facts, stderr_tail=text, now=time.time())
        if exited_ok:
            return Classification()
        if from_text.error_class not in (None, "no_result"):
            return from_text
        return Classification(error_class="unknown_error", message=text.strip()[-500:] or None)

    def _arm_stall(self, delay: float) -> None:
        self._later(delay, self._check_stall)

    def _follow(self) -> None:
        """Take the events the renderer appended to the events file since the last look."""
        if self._closed or self._broken or self.events_file is None:
            return
        if self._events_fd < 0:
            try:
                self._events_fd = os.open(self.events_file, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return  # not written yet
        taken = self.next_seq
        try:
            while data := os.pread(self._events_fd, 1 << 20, self._events_pos):
                self._events_pos += len(data)
                for event in self.parser.feed(data):
                    self._take(event, self.job.log.size)
        except Exception:  # never let a parsing bug disturb the job
            log.exception("job %s: claude events file unreadable; no more events", self.job.id)
            self._broken = True
            self.stall_timeout = None
        if self.next_seq != taken:
            self.job.waiting_changed()  # wake subscribers: claude.event notifications to send

    def _poll_events(self) -> None:
        self._poll = None
        if self._closed:
            return
        self._follow()
        self._poll = asyncio.get_running_loop().call_later(EVENTS_POLL, self._poll_events)

    def _close_events(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._events_fd >= 0:
            os.close(self._events_fd)
            self._events_fd = -1

    def _check_stall(self) -> None:
        if self._closed or self.facts.result is not None or self.stall_timeout is None:
            return
        quiet = time.monotonic() - self.last_event_mono
        if quiet >= self.stall_timeout:
            self.stalled = True
            log.info("job %s: no claude event for %.1fs; ending it", self.job.id, quiet)
            self._stop(JobReason.IDLE_TIMEOUT)
        else:
            self._arm_stall(self.stall_timeout - quiet)

    def _hung_after_result(self) -> None:
        if self._closed:
            return
        self.ended_after_result = True
        log.warning(
            "job %s: claude still running %.1fs after its result; ending it", self.job.id, self.exit_grace
        )
        self._stop(JobReason.EXITED)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))
