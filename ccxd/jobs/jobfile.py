"""A job's admission record on local disk, written before it runs.

The store is written behind (batched, possibly degraded), so a daemon killed
right after admitting a job could lose the only record of it and leave its
processes running unsupervised.  One small file per job next to its spool
closes that window: it is written before the process is spawned and removed
with the spool, and crash recovery treats a job file the store does not know
as an unfinished job.  A plain write survives the daemon being killed (the
kernel has it); only a machine crash in the same instant could lose it, and
then the job's processes are gone too.

The file is rewritten in place (never a new file or a truncate: those are the
dearest part of starting a job on a busy ext4): when a job under a shim starts, with
the shim's fields and the job's whole request next to the record
(``shimjob.save_record``, what a later daemon needs to adopt it; secret values
are left out), and when the job ends, without them.  The directory is private
(0700) and the files 0600.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import msgspec

from ccxd.protocol import JobInfo

__all__ = ["load_all", "path", "remove", "save"]

log = logging.getLogger("ccxd.supervision")

_SUFFIX = ".job"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobInfo)


def path(directory: Path, job_id: str) -> str:
    """The job file of ``job_id``."""
    return f"{directory}/{job_id}{_SUFFIX}"  # a str: a Path costs more than the write


def save(directory: Path, info: JobInfo, extra: bytes = b"") -> None:
    """Write ``info`` as the job's record; raises OSError.

    ``extra`` is more JSON members (``"name":value,...``) in the same object;
    readers of the record ignore them.
    """
    raw = _encoder.encode(info)
    if extra:
        raw = raw[:-1] + b"," + extra + b"}"
    fd = os.open(path(directory, info.id), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # Overwritten in one write, never truncated (a truncate costs a journal
        # transaction): a shorter record is padded with spaces, which JSON ignores.
        old = os.fstat(fd).st_size
        if len(raw) < old:
            raw += b" " * (old - len(raw))
        os.pwrite(fd, raw, 0)
    finally:
        os.close(fd)


def remove(directory: Path, job_id: str) -> None:
    """Forget a job's admission record (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path(directory, job_id))


def load_all(directory: Path) -> list[JobInfo]:
    """Every readable admission record in ``directory``; torn or foreign files are skipped."""
    found = []
    for file in directory.glob(f"*{_SUFFIX}"):
        try:
            found.append(_decoder.decode(file.read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable job file %s: %s", file, exc)
    return found
