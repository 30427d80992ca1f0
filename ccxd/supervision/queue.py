"""The order in which queued jobs start: priority, age, groups and dependencies (no I/O).

A queued job is *ready* once every job it waits for (``after``, ``after_any``)
has ended; ready jobs start best first: higher priority, then older.  A ready
job is passed over (the jobs behind it may start) while one of its groups is
paused or runs its ``parallel`` limit of jobs already.  A job's groups are the
one it names (``--group``) and implicit ones (``claude`` for Claude jobs).

The supervisor tells the queue what starts and ends; the queue answers which
jobs may start now (:meth:`JobQueue.pick`), what each waits for
(:meth:`JobQueue.waiting_for`) and which waiting jobs an ended job releases or
fails (:meth:`JobQueue.ended`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from ccxd.jobs.priority import PRIORITIES, priority_value

__all__ = ["PRIORITIES", "GroupRule", "JobQueue", "priority_value"]

T = TypeVar("T")


class GroupRule:
    """One group: its limit (a runtime setting over the configured one), pause flag and counts."""

    __slots__ = ("configured", "name", "note", "override", "paused", "queued", "running")

    def __init__(self, name: str, configured: Callable[[str], int | None], note: str | None = None) -> None:
        self.name = name
        self.configured = configured
        self.override: int | None = None
        """``group.set parallel``: wins over the config while the daemon runs."""
        self.paused = False
        self.running = 0
        self.queued = 0
        self.note = note
        """What a job held by this full group waits for, instead of ``group NAME full (N/N)``."""

    @property
    def limit(self) -> int | None:
        """Jobs of the group running at once at most (None: no limit of its own)."""
        return self.override if self.override is not None else self.configured(self.name)

    @property
    def open(self) -> bool:
        """True if a job of the group may start now (not paused, not full)."""
        limit = self.limit
        return not self.paused and (limit is None or self.running < limit)

    def hold(self) -> str | None:
        """Why a job of this group cannot start now, or None."""
        if self.paused:
            return f"group {self.name} paused"
        limit = self.limit
        if limit is not None and self.running >= limit:
            return self.note or f"group {self.name} full ({self.running}/{limit})"
        return None


class _Entry(Generic[T]):
    __slots__ = ("after", "after_any", "groups", "id", "item", "key")

    def __init__(self, job_id: str, item: T, key: tuple[int, int], groups: tuple[str, ...]) -> None:
        self.id = job_id
        self.item = item
        self.key = key
        self.groups = groups
        self.after: list[str] = []  # still to end, and to succeed
        self.after_any: list[str] = []  # still to end, however

    @property
    def ready(self) -> bool:
        return not self.after and not self.after_any


class JobQueue(Generic[T]):
    """Queued jobs in start order, their groups and what they wait for.

    Each job is known by its id and carries an item (the supervisor's job), which
    :meth:`pick` and :meth:`positions` hand back.
    """

    def __init__(
        self,
        configured: Callable[[str], int | None] = lambda name: None,
        notes: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.configured = configured
        """The configured ``parallel`` of a group (None: unlimited)."""
        self.notes = notes
        """What jobs held by a full group wait for, when not ``group NAME full (N/N)``."""
        self.groups: dict[str, GroupRule] = {}
        self._entries: dict[str, _Entry[T]] = {}
        self._order: list[tuple[int, int, str, T]] = []  # ready entries, best first (by key; ids unique)
        self._waiters: dict[str, list[str]] = {}  # job id → queued jobs waiting for it to end
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def group(self, name: str) -> GroupRule:
        """The rule of group ``name`` (made on first use)."""
        rule = self.groups.get(name)
        if rule is None:
            rule = self.groups[name] = GroupRule(name, self.configured, self.notes(name))
        return rule

    # -- what enters and leaves --------------------------------------------

    def add(
        self,
        job_id: str,
        item: T,
        *,
        priority: int = 0,
        groups: Iterable[str] = (),
        after: Iterable[str] = (),
        after_any: Iterable[str] = (),
    ) -> int | None:
        """Queue ``job_id`` behind older jobs of its priority; its position when it is ready.

        ``after`` and ``after_any`` are the jobs it waits for that have not ended yet.
        """
        entry = _Entry(job_id, item, (-priority, next(self._seq)), tuple(dict.fromkeys(groups)))
        entry.after = list(dict.fromkeys(after))
        entry.after_any = [d for d in dict.fromkeys(after_any) if d not in entry.after]
        self._entries[job_id] = entry
        for name in entry.groups:
            self.group(name).queued += 1
        for dep in (*entry.after, *entry.after_any):
            self._waiters.setdefault(dep, []).append(job_id)
        if not entry.ready:
            return None
        return self._make_ready(entry) + 1

    def _make_ready(self, entry: _Entry[T]) -> int:
        index = bisect.bisect_left(self._order, entry.key)
        self._order.insert(index, (*entry.key, entry.id, entry.item))
        return index

    def remove(self, job_id: str) -> None:
        """Take a queued job out (cancelled, or ended while it waited)."""
        entry = self._entries.pop(job_id, None)
        if entry is None:
            return
        for name in entry.groups:
            self.group(name).queued -= 1
        for dep in (*entry.after, *entry.after_any):
            waiting = self._waiters.get(dep)
            if waiting is not None and job_id in waiting:
                waiting.remove(job_id)
                if not waiting:
                    del self._waiters[dep]
        if entry.ready:
            index = bisect.bisect_left(self._order, entry.key)
            if index < len(self._order) and self._order[index][2] == job_id:
                del self._order[index]

    def started(self, groups: Iterable[str]) -> None:
        """A job of ``groups`` runs (launched, or adopted from an earlier daemon)."""
        for name in groups:
            self.group(name).running += 1

    def finished(self, groups: Iterable[str]) -> None:
        """A running job of ``groups`` ended."""
        for name in groups:
            rule = self.group(name)
            rule.running = max(0, rule.running - 1)

    def ended(self, job_id: str, succeeded: bool) -> tuple[list[str], list[str]]:
        """``job_id`` ended: the queued jobs that became ready, and those that must fail.

        A job waiting ``after`` a job that did not succeed fails (and is taken out);
        ``after_any`` only waits for the end.
        """
        ready: list[str] = []
        failed: list[str] = []
        for waiter in self._waiters.pop(job_id, []):
            entry = self._entries.get(waiter)
            if entry is None:
                continue
            if job_id in entry.after:
                entry.after.remove(job_id)
                if not succeeded:
                    failed.append(waiter)
                    self.remove(waiter)
                    continue
            if job_id in entry.after_any:
                entry.after_any.remove(job_id)
            if entry.ready:
                self._make_ready(entry)
                ready.append(waiter)
        return ready, failed

    def transfer(self, old: str, new: str) -> None:
        """Jobs waiting for ``old`` wait for ``new`` instead (a retry attempt takes its place)."""
        waiting = self._waiters.pop(old, [])
        for waiter in waiting:
            entry = self._entries[waiter]
            for deps in (entry.after, entry.after_any):
                if old in deps:
                    deps[deps.index(old)] = new
        if waiting:
            self._waiters.setdefault(new, []).extend(waiting)

    # -- questions ----------------------------------------------------------

    def awaited(self, job_id: str) -> bool:
        """True if queued jobs wait for ``job_id`` to end."""
        return job_id in self._waiters

    def first_ready(self) -> T | None:
        """The ready job that would be asked first, or None."""
        return self._order[0][3] if self._order else None

    def open(self, groups: Iterable[str]) -> bool:
        """True if a job of ``groups`` may start now as far as they go."""
        return all(self.group(name).open for name in groups)

    def held_by(self, groups: Iterable[str]) -> str | None:
        """Why a job of ``groups`` could not start now (a paused or full group), or None."""
        for name in groups:
            why = self.group(name).hold()
            if why is not None:
                return why
        return None

    def cycle(self, job_id: str, deps: Iterable[str]) -> list[str] | None:
        """The chain by which ``job_id`` would wait for itself through ``deps``, or None."""
        stack = [(d, [job_id, d]) for d in deps]
        seen: set[str] = set()
        while stack:
            dep, path = stack.pop()
            if dep == job_id:
                return path
            if dep in seen:
                continue
            seen.add(dep)
            entry = self._entries.get(dep)
            if entry is not None:
                stack.extend((d, [*path, d]) for d in (*entry.after, *entry.after_any))
        return None

    def hold(self, job_id: str) -> str | None:
        """Why queued ``job_id`` cannot start now, apart from a free slot (None: it could)."""
        entry = self._entries.get(job_id)
        if entry is None:
            return None
        if entry.after:
            return f"job {entry.after[0]} (after)"
        if entry.after_any:
            return f"job {entry.after_any[0]} (after-any)"
        return self.held_by(entry.groups) if entry.groups else None

    def pick(self, slots: int, may_start: Callable[[T], bool]) -> list[T]:
        """Up to ``slots`` ready jobs that may start now, best first; they leave the queue.

        ``may_start`` has the last word on each (the Claude gate's waits); a job it
        refuses stays queued and the jobs behind it are asked in turn.
        """
        chosen: list[T] = []
        order = self._order
        i = 0
        while slots > 0 and i < len(order):
            job_id = order[i][2]
            entry = self._entries[job_id]
            if (entry.groups and not self.open(entry.groups)) or not may_start(entry.item):
                i += 1
                continue
            del order[i]
            del self._entries[job_id]
            for name in entry.groups:
                rule = self.group(name)
                rule.queued -= 1
                rule.running += 1
            chosen.append(entry.item)
            slots -= 1
        return chosen

    def positions(self, start: int = 1) -> Iterator[tuple[int, T]]:
        """Ready jobs from position ``start`` on, after their positions (1 = next)."""
        return enumerate([entry[3] for entry in self._order[start - 1 :]], start)

    def items(self) -> list[T]:
        """Every queued job, ready ones first in start order, then those waiting for others."""
        return [entry[3] for entry in self._order] + [e.item for e in self._entries.values() if not e.ready]
