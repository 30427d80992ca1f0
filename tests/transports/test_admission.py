"""The WebSocket accept gate (ccxd.transports.admission): caps on connections not logged in yet."""

from __future__ import annotations

from ccxd.transports.admission import AdmissionGate, Ticket, fd_budget


def never() -> int:
    raise AssertionError("descriptors are counted only when the caps leave room")


def test_caps_in_progress_per_peer_then_in_all() -> None:
    gate = AdmissionGate(max_pending=3, max_per_peer=2, budget=100)
    a1, a2 = gate.admit("10.0.0.1", lambda: 10), gate.admit("10.0.0.1", lambda: 11)
    assert isinstance(a1, Ticket) and isinstance(a2, Ticket)
    assert gate.admit("10.0.0.1", never) == "peer"
    b1 = gate.admit("10.0.0.2", lambda: 12)
    assert isinstance(b1, Ticket)
    assert gate.admit("10.0.0.3", never) == "handshakes"
    gate.release(a1)
    gate.release(a1)  # a second release (logged in, then gone) gives back nothing more
    assert gate.pending == 2
    assert isinstance(gate.admit("10.0.0.3", lambda: 12), Ticket)
    assert dict(gate.refused) == {"peer": 1, "handshakes": 1}


def test_the_descriptors_kept_for_jobs_are_never_used_before_login() -> None:
    gate = AdmissionGate(max_pending=64, max_per_peer=16, budget=fd_budget(256, 0.25))
    assert gate.budget == 192
    assert isinstance(gate.admit("127.0.0.1", lambda: 192), Ticket)
    assert gate.admit("127.0.0.1", lambda: 193) == "descriptors"
    assert gate.pending == 1 and gate.refused["descriptors"] == 1


def test_the_reserve_is_at_least_32_descriptors() -> None:
    assert fd_budget(64, 0.0) == 32
    assert fd_budget(20, 0.25) == 0
    assert fd_budget(1_048_576, 0.25) == 786_432
