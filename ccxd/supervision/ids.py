"""Job ids: short, unique, and sorted by the time they were made."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_job_id"]

_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

_last_id = [0, 0]  # milliseconds and tail of the last id made here


def new_job_id() -> str:
    """A short id that sorts by creation time (milliseconds) and is unique.

    Like a monotonic ULID: the tail is random for the first id of a
    millisecond and counts up for the others, so ids made here never repeat (20
    random bits alone collided once in a few thousand ids made in one
    millisecond) and sort in the order they were made, even if the clock steps back.
    """
    ms = int(time.time() * 1000)
    last_ms, last_tail = _last_id
    if ms > last_ms:
        tail = secrets.randbits(19)  # room to count up within the millisecond
    elif last_tail < (1 << 20) - 1:
        ms, tail = last_ms, last_tail + 1
    else:
        ms, tail = last_ms + 1, secrets.randbits(19)
    _last_id[:] = [ms, tail]
    stamp = ""
    for _ in range(9):
        ms, rem = divmod(ms, 32)
        stamp = _ID_ALPHABET[rem] + stamp
    return stamp + "".join(_ID_ALPHABET[(tail >> shift) & 31] for shift in (15, 10, 5, 0))
