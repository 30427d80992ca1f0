"""Per-job cgroup v2 memory and pids limits under ``Delegate=yes``, in a qemu boot.

One boot runs every check (``guest/check``); the tests below assert on what it
reported. ccxd runs from the .deb as the lingering user's ``ccxd.service`` with
``cgroup_backend = "v2"``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.deb_build import build_deb

from .conftest import require_root
from .machine import debian_tree
from .qemu import accelerator, boot, build_image

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def guest() -> Iterator[dict[str, Any]]:
    require_root()
    for tool in ("qemu-system-x86_64", "systemd-nspawn", "unshare", "mkfs.ext4", "debootstrap", "dpkg-deb"):
        require_tool(tool)
    tree = debian_tree()
    deb = build_deb()
    workdir = Path(tempfile.mkdtemp(prefix="ccxd-qemu-"))
    try:
        image = build_image(tree, deb, workdir)
        results, console, took = boot(tree, image, workdir)
        if "done" not in results:
            pytest.fail(
                f"the guest checks did not finish ({accelerator()}, {took:.0f} s):\n{console[-6000:]}"
            )
        results["_console"] = console
        yield results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _events(jsonl: str) -> tuple[str, dict[str, Any]]:
    """The output and the final job record of a ``ccxctl run|attach --json`` transcript."""
    out, job = [], None
    for line in jsonl.splitlines():
        msg = json.loads(line)
        if msg["event"] == "job.output":
            out.append(msg["data"]["data"])
        elif msg["event"] == "job.finished":
            job = msg["data"]["job"]
    assert job is not None, jsonl
    return "".join(out), job


def test_the_guest_has_full_cgroup_v2(guest: dict[str, Any]) -> None:
    assert guest["boot"]["cgroupfs"] == "cgroup2fs"
    assert {"memory", "pids"} <= set(guest["boot"]["controllers"].split())


def test_ccxd_runs_delegated_and_jobs_get_their_own_cgroups_below_it(guest: dict[str, Any]) -> None:
    unit = dict(line.split("=", 1) for line in guest["unit"].splitlines())
    assert (unit["ActiveState"], unit["SubState"], unit["Delegate"]) == ("active", "running", "yes")
    service = unit["ControlGroup"]
    assert service.endswith("/ccxd.service")
    # The daemon's unit stays a leaf (so systemd can start it again while jobs run on);
    # jobs get groups in a delegated scope beside it, with the memory and pids controllers.
    daemon_cgroup = guest["daemon-cgroup"].strip().removeprefix("0::")
    assert daemon_cgroup == service
    job_cgroup = guest["job-cgroup"].strip().removeprefix("0::")
    scope, job_dir = job_cgroup.rsplit("/", 1)
    assert scope.startswith(service.rsplit("/", 1)[0] + "/ccxd-jobs-") and scope.endswith(".scope")
    assert job_dir.startswith("job-")
    assert {"memory", "pids"} <= set(guest["scope-subtree-control"].split())


def test_a_job_past_its_memory_limit_is_killed_as_oom(guest: dict[str, Any]) -> None:
    out, job = _events(guest["memory"])
    assert job["limits"]["memory"] == 64 * 1024 * 1024 and not job.get("limits_unenforced")
    assert job["reason"] == "oom" and "survived" not in out, (out, job)
    assert guest["memory-exit"] != 0


def test_a_job_past_its_pids_limit_cannot_fork(guest: dict[str, Any]) -> None:
    out, job = _events(guest["pids"])
    assert job["limits"]["pids"] == 10 and not job.get("limits_unenforced"), job
    assert "fork" in out.lower() or "resource temporarily unavailable" in out.lower(), out
    assert out.count("\n") < 40  # not all 30 sleeps started


def test_a_job_adopted_after_a_restart_keeps_its_cgroup_and_memory_limit(guest: dict[str, Any]) -> None:
    before = json.loads(guest["adopted-before"])
    assert len(before) == 1 and before[0]["state"] == "running"
    why = (guest["adopted-unit"], guest["adopted-daemon-cgroup"], guest["adopted-journal"])
    assert guest["adopted-status"], why
    assert json.loads(guest["adopted-status"])["cgroups"].startswith("v2 "), why
    out, job = _events(guest["adopted"])
    assert job["id"] == before[0]["id"] and job.get("cgroup") == before[0]["cgroup"], (job, why)
    assert job["limits"]["memory"] == 64 * 1024 * 1024
    # The daemon that adopted the job saw it hit the limit it was started with.
    assert job["reason"] == "oom" and "survived" not in out, (out, job)


def test_stop_leaves_no_process_in_the_service_cgroup(guest: dict[str, Any]) -> None:
    assert guest["after-stop"].split() == []
    # The jobs' scope ends with the last job.
    assert guest["scopes-after-stop"].split() == [], guest["scope-tree-after-stop"]
