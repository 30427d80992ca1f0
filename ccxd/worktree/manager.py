"""Making, describing and removing jobs' git worktrees: the I/O around :mod:`ccxd.worktree.core`.

git runs as a child of the daemon, never through a shell (``git -C DIR …``),
reaped by the daemon's reaper and killed past its timeout
(:func:`ccxd.hooks.command.run_command`), so the event loop never waits for it.
Worktrees live under the state directory, ``worktrees/<repo>-<hash>/<job-id>``,
each with ``<job-id>.json`` beside it (its :class:`WorktreeInfo` and times): the
user's repository gets only git's own worktree entry and the branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from ccxd.errors import RpcError
from ccxd.hooks.command import CommandReply, run_command
from ccxd.proc.reaper import Reaper
from ccxd.protocol import (
    DiffStat,
    ErrorCode,
    WorktreeDiff,
    WorktreeEntry,
    WorktreeInfo,
    WorktreePruneResult,
    WorktreeRmResult,
)
from ccxd.worktree import core

__all__ = ["Worktrees"]

log = logging.getLogger("ccxd.worktree")

GIT_TIMEOUT = 60.0
"""Seconds one git command may take (a checkout of a large repository takes a while)."""
DIFF_MAX = 512 * 1024
_STATUS = ("status", "--porcelain", "-z", "--untracked-files=all")
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


class Record(msgspec.Struct, kw_only=True):
    """What ``<job-id>.json`` beside a worktree holds."""

    job_id: str
    info: WorktreeInfo
    created_at: float
    finished_at: float | None = None


class GitFailed(Exception):
    """git failed; the message is its own (stderr's last line)."""


class Worktrees:
    """The worktrees ccxd made for jobs, under ``root``."""

    def __init__(self, root: Path, reaper: Reaper, cwds: Callable[[], set[str]]) -> None:
        self.root = root
        self.reaper = reaper
        self.cwds = cwds
        """The cwds of worktree jobs not ended (a Claude retry runs in its first attempt's tree)."""
        self.env = dict(os.environ, **_GIT_ENV)

    def _busy(self, records: list[Record]) -> set[str]:
        """The paths of ``records`` a job runs in now."""
        cwds = self.cwds()
        return {
            rec.info.path
            for rec in records
            if any(c == rec.info.path or c.startswith(rec.info.path + "/") for c in cwds)
        }

    # -- git ------------------------------------------------------------------

    async def _git(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> CommandReply:
        reply = await run_command(["git", *args], "/", env or self.env, b"", GIT_TIMEOUT, self.reaper)
        if check and reply.code != 0:
            raise GitFailed(_why(reply))
        return reply

    # -- a job's start and end ------------------------------------------------

    async def create(self, cwd: str, job_id: str) -> tuple[WorktreeInfo, str]:
        """A new worktree for ``job_id`` from the HEAD of ``cwd``'s repository; and the job's cwd in it.

        Raises :class:`RpcError` (-32602) when ``cwd`` is in no repository or git fails.
        """
        reply = await self._git("-C", cwd, "rev-parse", "--show-toplevel", "--show-prefix", check=False)
        if reply.code != 0:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"cwd {cwd} is not in a git repository")
        top, _, prefix = reply.stdout.decode().rstrip("\n").partition("\n")
        try:
            head = await self._git("-C", top, "rev-parse", "--verify", "HEAD^{commit}")
            base = head.stdout.decode().strip()
            path = self.root / core.repo_dir_name(top) / job_id
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            branch = core.branch_name(job_id)
            await self._git("-C", top, "worktree", "add", "--quiet", "-b", branch, str(path), base)
        except GitFailed as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"cannot make a worktree of {top}: {exc}") from None
        info = WorktreeInfo(path=str(path), branch=branch, base=base, repo=top)
        job_cwd = os.path.join(str(path), prefix.rstrip("/")) if prefix else str(path)
        rec = Record(job_id=job_id, info=info, created_at=time.time())
        await asyncio.to_thread(_made, path, rec, job_cwd)
        log.info("job %s: worktree %s on %s from %s at %s", job_id, path, branch, top, base[:12])
        return info, job_cwd

    async def finish(self, job_id: str, info: WorktreeInfo) -> WorktreeInfo:
        """``info`` with what the job left: its branch's tip, diffstat and dirtiness (never raises)."""
        try:
            ended = await asyncio.wait_for(self._ended(info), GIT_TIMEOUT)
        except Exception as exc:  # the job's outcome stands; its record only lacks the diffstat
            log.warning("job %s: cannot read its worktree %s: %s", job_id, info.path, exc)
            return info
        await asyncio.to_thread(_update, self._record_path(info, job_id), ended)
        return ended

    async def _ended(self, info: WorktreeInfo) -> WorktreeInfo:
        status = await self._git("-C", info.path, *_STATUS)
        numstat = await self._diff(info, "--numstat", "-z")
        head = (await self._git("-C", info.path, "rev-parse", "HEAD")).stdout.decode().strip()
        count = await self._git("-C", info.path, "rev-list", "--count", f"{info.base}..HEAD")
        stat = core.parse_numstat(numstat)
        return msgspec.structs.replace(
            info,
            head=head,
            dirty=core.dirty(status.stdout),
            diffstat=DiffStat(
                files=stat.files,
                insertions=stat.insertions,
                deletions=stat.deletions,
                commits=int(count.stdout.decode().strip() or 0),
            ),
        )

    async def _diff(self, info: WorktreeInfo, *options: str) -> bytes:
        """``git diff BASE`` of the tree as it is, untracked files included.

        A copy of the worktree's index with every untracked file added as intent-to-add
        (``git add -N``: no object is written, the real index is untouched).
        """
        index = (await self._git("-C", info.path, "rev-parse", "--git-path", "index")).stdout.decode().strip()
        index_path = index if os.path.isabs(index) else os.path.join(info.path, index)
        fd, temp = tempfile.mkstemp(prefix="ccxd-index-")
        os.close(fd)
        try:
            await asyncio.to_thread(_copy, index_path, temp)
            env = dict(self.env, GIT_INDEX_FILE=temp)
            await self._git("-C", info.path, "add", "-N", "-A", env=env)
            reply = await self._git("-C", info.path, "diff", "--no-renames", *options, info.base, env=env)
            return reply.stdout
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    # -- methods --------------------------------------------------------------

    def _record_path(self, info: WorktreeInfo, job_id: str) -> Path:
        return Path(info.path).parent / f"{job_id}.json"

    async def records(self) -> list[Record]:
        """Every worktree ccxd made and has not removed, oldest first."""
        return await asyncio.to_thread(_load_all, self.root)

    async def _find(self, job_id: str) -> Record:
        for rec in await self.records():
            if rec.job_id == job_id:
                return rec
        raise RpcError(ErrorCode.JOB_NOT_FOUND, f"job {job_id} has no worktree")

    async def _state(self, rec: Record) -> tuple[bool, bool | None, bool | None]:
        """Whether it exists, is dirty, and its branch is merged into the repository's HEAD."""
        info = rec.info
        exists = os.path.isdir(info.path)
        dirty: bool | None = None
        if exists:
            try:
                status = await self._git("-C", info.path, *_STATUS)
                dirty = core.dirty(status.stdout)
            except GitFailed:
                dirty = None
        reply = await self._git(
            "-C", info.repo, "merge-base", "--is-ancestor", info.branch, "HEAD", check=False
        )
        merged = True if reply.code == 0 else False if reply.code == 1 else None
        return exists, dirty, merged

    async def list(self) -> list[WorktreeEntry]:
        """``worktree.list``."""
        records = await self.records()
        busy = self._busy(records)
        states = await asyncio.gather(*(self._state(rec) for rec in records))
        return [
            WorktreeEntry(
                job_id=rec.job_id,
                branch=rec.info.branch,
                path=rec.info.path,
                repo=rec.info.repo,
                base=rec.info.base,
                exists=exists,
                running=rec.info.path in busy,
                dirty=dirty,
                merged=merged,
                created_at=rec.created_at,
                finished_at=rec.finished_at,
            )
            for rec, (exists, dirty, merged) in zip(records, states, strict=True)
        ]

    async def diff(self, job_id: str) -> WorktreeDiff:
        """``worktree.diff``: the patch against the base commit, at most :data:`DIFF_MAX` bytes."""
        rec = await self._find(job_id)
        if not os.path.isdir(rec.info.path):
            raise RpcError(ErrorCode.INVALID_PARAMS, f"job {job_id}'s worktree is gone ({rec.info.path})")
        try:
            patch = await self._diff(rec.info)
        except GitFailed as exc:
            raise RpcError(ErrorCode.INTERNAL_ERROR, f"git diff failed: {exc}") from None
        truncated = len(patch) > DIFF_MAX
        if truncated:
            patch = patch[: patch.rfind(b"\n", 0, DIFF_MAX) + 1]
        return WorktreeDiff(job_id=job_id, diff=patch.decode("utf-8", "replace"), truncated=truncated)

    async def remove(self, job_id: str, force: bool = False) -> WorktreeRmResult:
        """``worktree.rm``: the worktree, then its branch (kept when not merged, unless ``force``)."""
        rec = await self._find(job_id)
        if self._busy([rec]):
            raise RpcError(ErrorCode.INVALID_PARAMS, f"job {job_id} is running in its worktree")
        _, dirty, _ = await self._state(rec)
        if dirty and not force:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"the worktree of job {job_id} has uncommitted changes ({rec.info.path}); --force removes it",
            )
        return await self._remove(rec, force=force)

    async def _remove(self, rec: Record, *, force: bool) -> WorktreeRmResult:
        info = rec.info
        args = ["-C", info.repo, "worktree", "remove", *(["--force"] if force else []), info.path]
        try:
            if os.path.isdir(info.path):
                await self._git(*args)
            else:
                await self._git("-C", info.repo, "worktree", "prune", check=False)
        except GitFailed as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"cannot remove {info.path}: {exc}") from None
        delete = "-D" if force else "-d"
        deleted = await self._git("-C", info.repo, "branch", delete, info.branch, check=False)
        await asyncio.to_thread(_unlink, self._record_path(info, rec.job_id))
        note = None
        if deleted.code != 0:
            note = f"branch {info.branch} kept: {_why(deleted)}"
        log.info("job %s: worktree %s removed%s", rec.job_id, info.path, f"; {note}" if note else "")
        return WorktreeRmResult(job_id=rec.job_id, branch_deleted=deleted.code == 0, note=note)

    async def prune(self, keep_days: float | None, remove_merged: bool) -> WorktreePruneResult:
        """One round of the cleanup policy (:func:`ccxd.worktree.core.decide`)."""
        removed: list[str] = []
        kept: dict[str, str] = {}
        records = await self.records()
        busy = self._busy(records)
        now = time.time()
        for rec in records:
            running = rec.info.path in busy
            exists, dirty, merged = (False, None, None) if running else await self._state(rec)
            since = rec.finished_at if rec.finished_at is not None else rec.created_at
            decision = core.decide(
                running=running,
                exists=exists or running,
                is_dirty=dirty is not False,  # unknown counts as dirty: kept
                merged=merged is True,
                age_days=(now - since) / 86400,
                keep_days=keep_days,
                remove_merged=remove_merged,
            )
            if not decision.remove:
                kept[rec.job_id] = decision.why
                continue
            try:
                await self._remove(rec, force=False)
            except RpcError as exc:
                kept[rec.job_id] = exc.message
                continue
            removed.append(rec.job_id)
        return WorktreePruneResult(removed=removed, kept=kept)


def _why(reply: CommandReply) -> str:
    if reply.timed_out:
        return f"git timed out after {GIT_TIMEOUT:g}s"
    lines = reply.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"git exited {reply.code}"


def _made(path: Path, rec: Record, job_cwd: str) -> None:
    os.makedirs(job_cwd, exist_ok=True)  # a directory git does not track (an empty one) is made
    _write(path.parent / f"{rec.job_id}.json", rec)


def _write(target: Path, rec: Record) -> None:
    temp = target.with_suffix(".tmp")
    temp.write_bytes(msgspec.json.encode(rec))
    os.replace(temp, target)


def _update(target: Path, info: WorktreeInfo) -> None:
    try:
        rec = msgspec.json.decode(target.read_bytes(), type=Record)
    except (OSError, msgspec.DecodeError):
        return
    _write(target, msgspec.structs.replace(rec, info=info, finished_at=time.time()))


def _load_all(root: Path) -> list[Record]:
    found = []
    for path in root.glob("*/*.json"):
        try:
            found.append(msgspec.json.decode(path.read_bytes(), type=Record))
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("worktree record %s unreadable: %s", path, exc)
    return sorted(found, key=lambda r: r.created_at)


def _copy(src: str, dst: str) -> None:
    try:
        with open(src, "rb") as f:
            Path(dst).write_bytes(f.read())
    except FileNotFoundError:
        os.unlink(dst)  # no index yet: git starts from none (an empty file would be a broken one)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
