"""Who may have written a file ccxd obeys (ccxd/ownership.py), without I/O."""

from __future__ import annotations

from ccxd.ownership import unsafe_reason


def test_the_users_own_and_roots_files_are_trusted():
    assert unsafe_reason(owner=1000, mode=0o100644, uid=1000) is None
    assert unsafe_reason(owner=0, mode=0o100600, uid=1000) is None
    assert unsafe_reason(owner=1000, mode=0o041755, uid=1000) is None  # sticky, but not writable by others


def test_another_users_file_is_refused_with_its_name():
    reason = unsafe_reason(owner=1001, mode=0o100600, uid=1000, owner_name="mallory")
    assert reason == "owned by mallory (uid 1001), not by you; chown it to yourself"
    assert (
        unsafe_reason(owner=1001, mode=0o100600, uid=1000)
        == "owned by uid 1001, not by you; chown it to yourself"
    )


def test_a_file_its_group_or_others_may_write_is_refused():
    assert unsafe_reason(1000, 0o100664, 1000) == "writable by its group (mode 0664); chmod go-w it"
    assert unsafe_reason(1000, 0o100646, 1000) == "writable by others (mode 0646); chmod go-w it"
    assert unsafe_reason(0, 0o040777, 1000) == "writable by group and others (mode 0777); chmod go-w it"
