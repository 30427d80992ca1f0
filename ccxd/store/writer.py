"""Write-behind to the store: jobs never wait for Redis, and nothing is lost when it fails.

:meth:`StoreWriter.submit` never blocks and never raises.  Writes are batched
into one pipeline per round trip.  When the store fails (error or timeout) the
writer turns *degraded*: the failed batch and every later write go, in order,
to an append-only journal on disk; a probe checks the store every second, and
once it answers the journal is replayed oldest first and the writer returns to
direct writes.  Replays are safe to repeat: job records are overwritten and
output chunks carry their offset as the stream entry id, so a chunk is never
stored twice.

Redis acknowledges a write before its append-only file has it (``appendfsync
everysec`` may hold it back for up to two seconds), so a killed server can lose
writes it answered.  The writer therefore keeps what was acknowledged in the
last few seconds and, when the store fails, journals that too, ahead of the
failed batch.

A write the store refuses while it answers (a key of another type, a script
error) is that write's failure: logged with its key, counted in
``daemon.status``, and the rest of its batch is written.  A full journal
(``journal_max_bytes``) drops writes, and says so the same ways.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from pathlib import Path

from ccxd.protocol import StoreHealth
from ccxd.store.base import Store, StoreUnavailable, WriteRefused
from ccxd.store.journal import Journal
from ccxd.store.ops import AppendOutput, Op

__all__ = ["StoreWriter"]

log = logging.getLogger("ccxd.store")

_BATCH_OPS = 512
_BATCH_BYTES = 4 * 1024 * 1024
_PROBE_INTERVAL = 1.0
_UNSYNCED_SECONDS = 5.0
"""How long an acknowledged write may still be missing from Redis's append-only file (everysec: up to 2 s)."""
_UNSYNCED_MAX_BYTES = 32 * 1024 * 1024
_LOG_INTERVAL = 60.0
"""A repeated refusal of one key, or a journal that stays full, is logged again this often."""


def _size(op: Op) -> int:
    return len(op.data) + 64 if isinstance(op, AppendOutput) else 512


class StoreWriter:
    """Queues store writes and applies them in the background."""

    def __init__(
        self, store: Store, journal_dir: Path, *, journal_limit: int, memory_limit: int = 64 * 1024 * 1024
    ) -> None:
        self.store = store
        self.journal_dir = journal_dir
        self.journal_limit = journal_limit
        self.memory_limit = memory_limit
        journal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.journal = Journal(journal_dir / "current.journal", journal_limit)
        self._queue: collections.deque[Op] = collections.deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._degraded = bool(self.journal.count or self._segments())
        self._state_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.refused = 0
        """Writes the store refused since the start (see :class:`WriteRefused`)."""
        self.last_refused: WriteRefused | None = None
        self.dropped = 0
        """Writes lost since the start because the journal was full (or could not be written)."""
        self.submitted = 0
        """Writes submitted by this run: a mark for :meth:`has_stored`."""
        self._stored = 0  # of those, how many the store has answered (written or refused), in order
        self._segments()  # counts them
        self._backlog = self.journal.count + self._segment_count  # an earlier run's, replayed before ours
        self._refusals_logged: dict[str, tuple[float, int]] = {}  # key → (last logged, unlogged since)
        self._full_logged: float | None = None  # when "journal full" was last logged; None: not full
        # Batches acknowledged within _UNSYNCED_SECONDS of the latest acknowledgement:
        # (when, ops, bytes, the server that had answered before the batch was sent).
        self._unsynced: collections.deque[tuple[float, list[Op], int, str]] = collections.deque()
        self._unsynced_bytes = 0

    # -- public ---------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while writes go to the journal because the store failed."""
        return self._degraded

    @degraded.setter
    def degraded(self, value: bool) -> None:
        if value != self._degraded:
            self._degraded = value
            self._state_changed.set()
            self._state_changed = asyncio.Event()

    async def wait_degraded(self, value: bool, timeout: float) -> None:
        """Wait until ``degraded`` is ``value`` (raise TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while self._degraded != value:
                await self._state_changed.wait()

    def start(self) -> None:
        """Begin writing in the background (replaying any journal left from before)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    def submit(self, op: Op) -> None:
        """Queue a write; never blocks, never raises."""
        self.submitted += 1
        if self.degraded:
            self._journal(op)
            return
        self._queue.append(op)
        self._queued_bytes += _size(op)
        if self._queued_bytes > self.memory_limit:
            # The store is slower than the jobs: keep order, move the backlog to disk.
            log.warning("store is falling behind; spilling %d writes to the journal", len(self._queue))
            self._spill()
        self._idle.clear()
        self._wake.set()

    def has_stored(self, mark: int) -> bool:
        """Whether the store has every write up to ``mark`` (a value of :attr:`submitted`).

        Writes reach it in order, directly or replayed from the journal.  Once a
        full journal dropped one, the count no longer says which: never again.
        """
        return self.dropped == 0 and self._stored >= mark

    @property
    def pending(self) -> int:
        """Writes not yet in the store."""
        return len(self._queue) + self.journal.count + self._segment_count

    def describe(self) -> str:
        """One line for ``status``: ``redis`` or ``redis: degraded (N pending)``, and a full journal."""
        if self.degraded:
            full = f"; journal full, {self.dropped} writes dropped" if self._full_logged is not None else ""
            return f"{self.store.name}: degraded ({self.pending} pending{full})"
        return self.store.name

    def health(self) -> StoreHealth:
        """The writes that did not reach the store, for ``daemon.status``."""
        last = self.last_refused
        return StoreHealth(
            refused=self.refused,
            last_refused=f"{last.what}: {last.error}" + (f" (key {last.key})" if last.key else "")
            if last is not None
            else None,
            journal_dropped=self.dropped,
            journal_full=self._full_logged is not None,
            journal_bytes=self.journal.size,
        )

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued is written (or journaled); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed, journal the rest, stop."""
        if not self.degraded:
            await self.flush(timeout)
        if self._queue:
            self._spill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.journal.close()

    # -- internals ------------------------------------------------------------

    def _spill(self) -> None:
        self.degraded = True
        while self._queue:
            self._journal(self._queue.popleft())
        self._queued_bytes = 0
        self._wake.set()

    def _journal(self, op: Op) -> None:
        """Append ``op`` to the journal; a full journal drops it and says so (log, counter, status)."""
        if self.journal.append(op):
            return
        self.dropped += 1
        now = time.monotonic()
        if self._full_logged is None or now - self._full_logged >= _LOG_INTERVAL:
            self._full_logged = now
            log.error(
                "store journal full (journal_max_bytes = %d, %s): %d writes dropped so far; "
                "history will miss them",
                self.journal_limit,
                self.journal.path,
                self.dropped,
            )

    def _refused(self, refusals: list[WriteRefused]) -> None:
        """Count and log writes the store refused (each key at most once a minute, with a count)."""
        now = time.monotonic()
        if len(self._refusals_logged) > 1000:
            self._refusals_logged.clear()  # many keys: some are said again sooner, none is kept forever
        for r in refusals:
            self.refused += 1
            self.last_refused = r
            last, unlogged = self._refusals_logged.get(r.key or r.what, (-_LOG_INTERVAL, 0))
            if now - last < _LOG_INTERVAL:
                self._refusals_logged[r.key or r.what] = (last, unlogged + 1)
                continue
            self._refusals_logged[r.key or r.what] = (now, 0)
            more = f" ({unlogged} more refused since the last report)" if unlogged else ""
            at = f" at key {r.key!r}" if r.key else ""
            log.error("the store refused %s%s: %s%s", r.what, at, r.error, more)

    _segment_count = 0

    def _segments(self) -> list[Path]:
        found = sorted(self.journal_dir.glob("segment-*.journal"))
        self._segment_count = sum(_count(p) for p in found) if found else 0
        return found

    async def _run(self) -> None:
        while True:
            if self.degraded:
                await self._recover()
                continue
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, size = self._take_batch()
            server = self.store.server
            try:
                refused = await self.store.apply(batch)
            except StoreUnavailable as exc:
                log.error("store unavailable (%s); writing to the journal until it is back", exc)
                self.degraded = True
                self._journal_unsynced()
                for op in batch:
                    self._journal(op)
                self._spill()
            except Exception:
                log.exception("store write failed; %d writes journaled", len(batch))
                self.degraded = True
                for op in batch:
                    self._journal(op)
                self._spill()
            else:
                self.written += len(batch) - len(refused)
                self._stored += len(batch)
                self._refused(refused)
                self._remember(batch, size, server)
                if self._unsynced[0][3] != self.store.server:
                    # A failover (a replica that had not received them yet) or a restart
                    # (before its fsync) may have lost what the previous server acknowledged.
                    log.warning("the store answers from another server now; writing recent writes again")
                    self.degraded = True
                    self._journal_unsynced()
                    self._spill()

    def _remember(self, batch: list[Op], size: int, server: str) -> None:
        """Keep a batch ``server`` acknowledged (``size`` as :func:`_size` counts) until surely saved."""
        now = time.monotonic()
        self._unsynced.append((now, batch, size, server))
        self._unsynced_bytes += size
        # An answer at ``now`` proves the server lived past every older batch's window.
        while self._unsynced and (
            self._unsynced[0][0] < now - _UNSYNCED_SECONDS or self._unsynced_bytes > _UNSYNCED_MAX_BYTES
        ):
            self._unsynced_bytes -= self._unsynced.popleft()[2]

    def _journal_unsynced(self) -> None:
        """Journal the recently acknowledged writes again: the failed server may have lost them."""
        ops = [op for _, batch, _, _ in self._unsynced for op in batch]
        self._unsynced.clear()
        self._unsynced_bytes = 0
        if ops:
            # They count as stored again only once replayed (replays are idempotent).
            self._stored -= len(ops)
            log.info("journaling again %d writes acknowledged within %.0f s", len(ops), _UNSYNCED_SECONDS)
        for op in ops:
            self._journal(op)

    def _take_batch(self) -> tuple[list[Op], int]:
        """The next batch, and its size as :func:`_size` counts."""
        batch: list[Op] = []
        size = 0
        while self._queue and len(batch) < _BATCH_OPS and size < _BATCH_BYTES:
            op = self._queue.popleft()
            s = _size(op)
            size += s
            self._queued_bytes -= s
            batch.append(op)
        return batch, size

    async def _recover(self) -> None:
        """Probe until the store answers, then replay every journal segment in order."""
        self._idle.set()  # nothing more will be written directly while degraded
        while True:
            try:
                await self.store.ping()
                break
            except StoreUnavailable:
                await asyncio.sleep(_PROBE_INTERVAL)
        while True:
            segments = self._segments()
            if not segments:
                if self.journal.count == 0:
                    # Switching back is synchronous with submit(): no write can slip between.
                    self.degraded = False
                    self._full_logged = None
                    log.info("store is back; journal replayed")
                    return
                segments = [self._rotate()]
            for seg in segments:
                ok = await self._replay(seg)
                if not ok:
                    await asyncio.sleep(_PROBE_INTERVAL)
                    return  # _run calls us again: probe, then resume with this segment

    def _rotate(self) -> Path:
        self.journal.close()
        self._full_logged = None  # writes go to a fresh journal from here
        # Segments are numbered so replay keeps their order, across restarts too.
        seg = self.journal_dir / f"segment-{_next_serial(self.journal_dir):012d}.journal"
        (self.journal_dir / "current.journal").rename(seg)
        self.journal = Journal(self.journal_dir / "current.journal", self.journal_limit)
        return seg

    async def _replay(self, seg: Path) -> bool:
        reader = Journal(seg, 1 << 62)
        replayed = refused_total = 0
        try:
            for batch in reader.batches(_BATCH_OPS):
                try:
                    refused = await self.store.apply(batch)
                except StoreUnavailable as exc:
                    log.warning("replay interrupted (%s); will retry", exc)
                    return False
                self._refused(refused)
                replayed += len(batch) - len(refused)
                refused_total += len(refused)
        finally:
            reader.close()
        seg.unlink(missing_ok=True)
        # Counted per whole segment: an interrupted one is replayed again from its start.
        done = replayed + refused_total
        earlier = min(done, self._backlog)
        self._backlog -= earlier
        self._stored += done - earlier
        log.info("replayed %d journaled writes from %s", replayed, seg.name)
        return True


def _count(path: Path) -> int:
    j = Journal(path, 1 << 62)
    try:
        return j.count
    finally:
        j.close()


def _next_serial(directory: Path) -> int:
    serials = [int(p.stem.split("-")[1]) for p in directory.glob("segment-*.journal")]
    return max(serials, default=0) + 1
