"""Job ids: unique, sortable by creation, 13 characters of Crockford-like base32."""

from __future__ import annotations

import re

import pytest

from ccxd.supervision import supervisor
from ccxd.supervision.supervisor import new_job_id


def test_ids_made_within_one_millisecond_never_repeat_and_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor.time, "time", lambda: 1_800_000_000.0004)  # a frozen clock
    ids = [new_job_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"[0-9a-z]{13}", i) for i in ids[:100])


def test_a_clock_that_steps_back_does_not_bring_back_an_earlier_id(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_100.0]
    monkeypatch.setattr(supervisor.time, "time", lambda: now[0])
    first = [new_job_id() for _ in range(10)]
    now[0] -= 5.0  # NTP stepped the clock back five seconds
    later = [new_job_id() for _ in range(10)]
    assert min(later) > max(first)
    assert len(set(first + later)) == 20
