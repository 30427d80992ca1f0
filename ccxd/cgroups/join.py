"""Putting a job's first process into its group before it can run (or fork) anything.

``Popen`` spawns with ``vfork`` (no ``preexec_fn``, which would force a slow
fork) and Python has no ``clone3(CLONE_INTO_CGROUP)``.  Writing the child's pid
afterwards races with the child's first fork.  So the job starts as a tiny
``/bin/sh`` that writes ``0`` (itself) into each ``cgroup.procs`` and then
``exec``s the real program: the pid, process group and session stay the same,
and nothing of the job runs outside its group.  It costs more per job than
moving the daemon's own thread in and out, which would put the daemon under the
job's limits for that instant (docs/decisions/9-cgroup-join-wrapper.md).

``exec`` by the shell would turn a missing program into exit 127 instead of a
``failed_to_start`` error, so the program is resolved here first, the way
``execvpe`` does it with the job's ``PATH``.
"""

from __future__ import annotations

import os

from ccxd.proc.spawn import SpawnError

__all__ = ["JOIN_EXIT", "resolve_program", "wrap_argv"]

JOIN_EXIT = 125
"""Exit status of a job whose process could not join its group (the shell says why on stderr)."""

_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit '
    + str(JOIN_EXIT)
    + '; shift; n=$((n-1)); done; exec "$@"'
)


def resolve_program(program: str, cwd: str, env: dict[str, str]) -> str:
    """The file ``program`` runs as (PATH search like execvpe); raise :class:`SpawnError`."""
    if not os.path.isdir(cwd):
        return program  # Popen reports the working directory precisely
    if "/" in program:
        candidates = [os.path.join(cwd, program)]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [os.path.join(d or ".", program) for d in path.split(os.pathsep)]
    denied = False
    for cand in candidates:
        if os.path.isfile(cand if os.path.isabs(cand) else os.path.join(cwd, cand)):
            full = cand if os.path.isabs(cand) else os.path.join(cwd, cand)
            if os.access(full, os.X_OK):
                return full
            denied = True
    if denied:
        raise SpawnError(f"program {program!r} is not executable")
    raise SpawnError(f"program {program!r} not found")


def wrap_argv(argv: list[str], join_files: list[str], cwd: str, env: dict[str, str]) -> list[str]:
    """``argv`` prefixed so its process joins ``join_files`` first (unchanged if none)."""
    if not join_files:
        return argv
    program = resolve_program(argv[0], cwd, env)
    return ["/bin/sh", "-c", _SCRIPT, "ccxd-join", str(len(join_files)), *join_files, program, *argv[1:]]
