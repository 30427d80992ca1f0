"""Telling ``systemctl restart`` from ``systemctl stop``: the unit and its job type."""

from __future__ import annotations

import pytest

from ccxd.systemd_job import parse_jobs, unit_from_cgroup, unit_job_type

USER_V2 = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/ccxd.service/daemon\n"
HYBRID_SYSTEM = (
    "12:pids:/system.slice/ccxd.service\n"
    "1:name=systemd:/system.slice/ccxd.service\n"
    "0::/system.slice/ccxd.service\n"
)
SHELL = "0::/user.slice/user-1000.slice/session-3.scope\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (USER_V2, ("ccxd.service", True)),
        (HYBRID_SYSTEM, ("ccxd.service", False)),
        ("1:name=systemd:/user.slice/user-1000.slice/user@1000.service/ccxd@x.service\n", ("ccxd@x.service", True)),
        (SHELL, None),
        ("", None),
    ],
    ids=["user-v2-child-group", "system-hybrid", "v1-only-template", "login-shell", "no-cgroups"],
)
def test_unit_and_manager_from_proc_self_cgroup(text: str, expected: tuple[str, bool] | None) -> None:
    assert unit_from_cgroup(text) == expected


def test_the_job_type_of_our_unit_only() -> None:
    listing = "41 other.service start waiting\n42 ccxd.service restart running\n"
    assert parse_jobs(listing, "ccxd.service") == "restart"
    assert parse_jobs("43 ccxd.service stop running\n", "ccxd.service") == "stop"
    assert parse_jobs("", "ccxd.service") is None
    assert parse_jobs(listing, "ccxd-websocket.service") is None


async def test_outside_systemd_nothing_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert await unit_job_type() is None
