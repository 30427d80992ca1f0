"""Queue entries are sealed with the fleet key: a forged or altered one is never run (no I/O)."""

from __future__ import annotations

import os

import pytest

from ccxd.fleet.entry import BadSeal, JobEntry, pack_entry, unpack_entry
from ccxd.protocol import StartParams

KEY = os.urandom(32)


def entry(job_id: str = "j1", **params: object) -> JobEntry:
    return JobEntry(
        job_id=job_id, params=StartParams(command="echo hi", **params), submitter="A", queued_at=1.5
    )


def test_round_trip_keeps_everything() -> None:
    e = entry(priority=-7, where={"zone": "a"}, retry_on_node_loss=True)
    got = unpack_entry(KEY, "j1", pack_entry(KEY, e))
    assert got == e
    assert got.bucket == "low"
    assert got.rerunnable


def test_claude_jobs_run_again_after_node_loss_without_asking() -> None:
    assert entry(kind="claude", prompt="hi").rerunnable
    assert not entry().rerunnable


def test_a_changed_command_is_refused() -> None:
    raw = pack_entry(KEY, entry())
    tampered = raw.replace(b"echo hi", b"rm -rf ")
    assert len(tampered) == len(raw) and tampered != raw
    with pytest.raises(BadSeal, match="MAC is not the fleet key's"):
        unpack_entry(KEY, "j1", tampered)


def test_another_key_or_another_job_id_is_refused() -> None:
    raw = pack_entry(KEY, entry())
    with pytest.raises(BadSeal):
        unpack_entry(os.urandom(32), "j1", raw)
    with pytest.raises(BadSeal):  # a sealed spec cannot stand in for another job's
        unpack_entry(KEY, "j2", raw)


def test_unsealed_bytes_are_refused() -> None:
    with pytest.raises(BadSeal, match="not sealed"):
        unpack_entry(KEY, "j1", b"\x85whatever")
