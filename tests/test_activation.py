"""Socket activation: LISTEN_* parsing and matching descriptors to front-ends (no sockets)."""

from __future__ import annotations

import socket

from ccxd.activation import Passed, assign, parse

PID = 4242


def test_nothing_passed_without_the_variables():
    assert parse({}, PID) == ([], None)
    assert parse({"LISTEN_FDS": "1"}, PID) == ([], None)  # no LISTEN_PID: not for us


def test_descriptors_meant_for_another_process_are_not_ours():
    # A job started by a socket-activated shell inherits the variables, with the shell's pid.
    assert parse({"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "unix:websocket"}, PID) == (
        [],
        None,
    )


def test_names_and_numbers_from_three():
    env = {"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "unix:websocket"}
    assert parse(env, PID) == ([Passed(3, "unix"), Passed(4, "websocket")], None)


def test_missing_names_are_unknown_and_a_wrong_count_is_reported():
    env = {"LISTEN_PID": str(PID), "LISTEN_FDS": "2"}
    assert parse(env, PID) == ([Passed(3, "unknown"), Passed(4, "unknown")], None)
    passed, warning = parse(dict(env, LISTEN_FDNAMES="unix"), PID)
    assert passed == [Passed(3, "unknown"), Passed(4, "unknown")]
    assert warning == "LISTEN_FDNAMES has 1 names for 2 descriptors; ignoring the names"


def test_malformed_numbers_are_ignored_with_a_warning():
    passed, warning = parse({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, PID)
    assert passed == [] and warning is not None and "LISTEN_PID='x'" in warning
    assert parse({"LISTEN_PID": str(PID), "LISTEN_FDS": "0"}, PID) == ([], None)
    passed, warning = parse({"LISTEN_PID": str(PID), "LISTEN_FDS": "-1"}, PID)
    assert passed == [] and warning == "ignoring LISTEN_FDS='-1'"


def test_assign_by_name():
    out = assign([Passed(3, "websocket"), Passed(4, "unix")], {3: socket.AF_INET6, 4: socket.AF_UNIX})
    assert (out.unix, out.websocket, out.unused, out.warnings) == (4, 3, [], [])


def test_assign_unnamed_by_family_and_named_ones_win():
    out = assign(
        [Passed(3, "unknown"), Passed(4, "unix"), Passed(5, "unknown")],
        {3: socket.AF_UNIX, 4: socket.AF_UNIX, 5: socket.AF_INET},
    )
    assert (out.unix, out.websocket, out.unused) == (4, 5, [3])
    assert out.warnings == ["fd 3 (unknown) is a second unix socket; ignored"]


def test_assign_refuses_mismatched_unknown_and_non_listening():
    out = assign(
        [Passed(3, "unix"), Passed(4, "metrics"), Passed(5, "websocket"), Passed(6, "unknown")],
        {3: socket.AF_INET, 4: socket.AF_UNIX, 5: socket.AF_INET, 6: -1},
    )
    assert (out.unix, out.websocket, sorted(out.unused)) == (None, 5, [3, 4, 6])
    assert sorted(out.warnings) == [
        "fd 3 (unix) has the wrong address family for its name; ignored",
        "fd 4 (metrics) has a name ccxd does not serve (expected unix or websocket); ignored",
        "fd 6 (unknown) is not a listening stream socket; ignored",
    ]
