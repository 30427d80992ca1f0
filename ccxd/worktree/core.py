"""Worktree names, git output parsing and the cleanup decision (no I/O).

A job started with ``worktree: true`` runs in a fresh ``git worktree`` of its
cwd's repository, on the branch ``ccxd/<job-id>``.  Everything here is a plain
function of its inputs; :mod:`ccxd.worktree.manager` runs git.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

__all__ = [
    "BRANCH_PREFIX",
    "Decision",
    "NumStat",
    "branch_name",
    "decide",
    "dirty",
    "parse_numstat",
    "repo_dir_name",
]

BRANCH_PREFIX = "ccxd/"


def branch_name(job_id: str) -> str:
    """The branch a job's worktree is made on: ``ccxd/<job-id>``."""
    return BRANCH_PREFIX + job_id


def repo_dir_name(toplevel: str) -> str:
    """The directory, under the state dir's ``worktrees``, holding one repository's worktrees.

    ``<name>-<8 hex of the path's SHA-1>``: readable, and two repositories named
    alike never share one.
    """
    toplevel = toplevel.rstrip("/") or "/"
    name = os.path.basename(toplevel) or "repo"
    digest = hashlib.sha1(toplevel.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name}-{digest}"


class NumStat(NamedTuple):
    """Files changed, lines added, lines removed (binary files count as files only)."""

    files: int
    insertions: int
    deletions: int


def parse_numstat(out: bytes) -> NumStat:
    """Sum ``git diff --numstat -z --no-renames`` output: ``ADDED<tab>DELETED<tab>PATH<NUL>`` each."""
    files = ins = dels = 0
    for record in out.split(b"\0"):
        parts = record.split(b"\t", 2)
        if len(parts) != 3:
            continue
        files += 1
        if parts[0].isdigit():
            ins += int(parts[0])
        if parts[1].isdigit():
            dels += int(parts[1])
    return NumStat(files, ins, dels)


def dirty(status: bytes) -> bool:
    """Whether ``git status --porcelain`` output names any change (untracked files included)."""
    return bool(status.strip(b"\0\n "))


class Decision(NamedTuple):
    """What the cleanup round does with one worktree, and why (in words)."""

    remove: bool
    why: str


def decide(
    *,
    running: bool,
    exists: bool,
    is_dirty: bool,
    merged: bool,
    age_days: float,
    keep_days: float | None,
    remove_merged: bool,
) -> Decision:
    """Remove a worktree, or keep it (conservative: a running or dirty tree is always kept).

    ``merged``: the branch's tip is reachable from the repository's HEAD (as
    ``git branch --merged`` says; a branch without commits of its own counts).
    ``age_days``: since its job ended (or since it was made, for a job that never ended here).
    """
    if running:
        return Decision(False, "its job is running")
    if not exists:
        return Decision(True, "its directory is gone")
    if is_dirty:
        return Decision(False, "it has uncommitted changes")
    if remove_merged and merged:
        return Decision(True, "its branch is merged")
    if keep_days is not None and age_days > keep_days:
        return Decision(True, f"older than {keep_days:g} days")
    return Decision(False, "not due")
