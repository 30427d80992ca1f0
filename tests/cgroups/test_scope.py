"""Where the jobs' scope goes: beside the daemon's unit, in the same slice."""

from __future__ import annotations

from ccxd.cgroups.scope import scope_location


def test_the_scope_sits_beside_a_user_unit_in_its_slice() -> None:
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/ccxd.service"
    assert scope_location("/sys/fs/cgroup", own, "abc") == (
        "ccxd-jobs-abc.scope",
        "app.slice",
        "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/ccxd-jobs-abc.scope",
    )


def test_a_system_unit_gets_its_scope_in_system_slice() -> None:
    assert scope_location("/sys/fs/cgroup", "/system.slice/ccxd.service", "x") == (
        "ccxd-jobs-x.scope",
        "system.slice",
        "/sys/fs/cgroup/system.slice/ccxd-jobs-x.scope",
    )


def test_no_scope_outside_a_service_in_a_slice() -> None:
    for own in ("/", "/user.slice/user-1000.slice/session-3.scope", "/ccxd.service", "/init.scope"):
        assert scope_location("/sys/fs/cgroup", own, "x") is None, own
