"""ccxctl: run --memory/--cpus/--pids, the oom message and exit code, status shows the backend."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.ccxctl.test_ccxctl import ccxctl

from .conftest import need_v1

PYTHON = os.path.realpath(sys.executable)


@pytest.mark.parametrize("fast", [True, False])
def test_run_with_limits_reports_oom(daemon_factory, fast):
    need_v1()
    d = daemon_factory(extra_env={"CCXD_CGROUP_BACKEND": "v1", "CCXD_STORE": "memory"})
    res = ccxctl(
        d, "run", "--memory", "64M", "--cpus", "1.5", "--pids", "256", "--argv", "--",
        PYTHON, "-c", "x = bytearray(400 << 20)", fast=fast,
    )  # fmt: skip
    assert res.returncode == 128 + 9
    assert b"out of memory: the job exceeded its memory limit of 64.0M" in res.stderr
    status = ccxctl(d, "status")
    assert b"cgroups\tv1 " in status.stdout


def test_bad_memory_value_is_refused_precisely(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_STORE": "memory"})
    res = ccxctl(d, "run", "--memory", "lots", "true")
    assert res.returncode == 2 and b"at `$.params.memory`" in res.stderr


def test_history_show_has_limits_and_usage(daemon_factory):
    d = daemon_factory(extra_env={"CCXD_STORE": "memory"})
    res = ccxctl(d, "run", "--json", "--memory", "256M", "--pids", "64", "true")
    job_id = json.loads(res.stdout.splitlines()[-1])["data"]["job"]["id"]
    shown = ccxctl(d, "history", "show", job_id).stdout.decode()
    assert "limits:   memory 256.0M, pids 64" in shown
    assert "usage:    cpu " in shown and "memory peak" in shown
