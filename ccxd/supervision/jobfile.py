"""A job's admission record on local disk, written before it runs.

The store is written behind (batched, possibly degraded), so a daemon killed
right after admitting a job could lose the only record of it and leave its
processes running unsupervised.  One small file per job next to its spool
closes that window: it is written before the process is spawned and removed
with the spool, and crash recovery treats a job file the store does not know
as an unfinished job.  A plain write survives the daemon being killed (the
kernel has it); only a machine crash in the same instant could lose it, and
then the job's processes are gone too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import msgspec

from ccxd.protocol import JobInfo

__all__ = ["load_all", "remove", "save"]

log = logging.getLogger("ccxd.supervision")

_SUFFIX = ".job"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobInfo)


def _path(directory: Path, job_id: str) -> Path:
    return directory / f"{job_id}{_SUFFIX}"


def save(directory: Path, info: JobInfo) -> None:
    """Write ``info`` as the job's admission record; raises OSError."""
    fd = os.open(_path(directory, info.id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, _encoder.encode(info))
    finally:
        os.close(fd)


def remove(directory: Path, job_id: str) -> None:
    """Forget a job's admission record (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        _path(directory, job_id).unlink()


def load_all(directory: Path) -> list[JobInfo]:
    """Every readable admission record in ``directory``; torn or foreign files are skipped."""
    found = []
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            found.append(_decoder.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable job file %s: %s", path, exc)
    return found
