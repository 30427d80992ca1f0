"""ccxctl's fleet commands and options against a real daemon outside fleet mode: a fleet of one."""

from __future__ import annotations

import json
import time

import pytest

from ccxctl.commands.nodes import age, node_rows
from ccxctl.render import job_rows
from ccxd.protocol import JobInfo, JobState, NodeInfo
from tests.ccxctl.test_ccxctl import ccxctl

NODE_ENV = {"CCXD_NODE_NAME": "alpha", "CCXD_NODE_LABELS": "gpu=1,os=debian", "CCXD_NODE_SLOTS": "3"}


@pytest.fixture
def alpha(daemon_factory):
    return daemon_factory(NODE_ENV)


def lines(res) -> list[list[str]]:
    """A piped table: tab-separated rows under a header row."""
    assert res.returncode == 0, res.stderr
    return [line.split("\t") for line in res.stdout.decode().splitlines()]


def test_nodes_lists_this_daemon_up_with_its_labels_slots_and_running_jobs(alpha):
    job = ccxctl(alpha, "run", "--detach", "sleep 60").stdout.decode().strip()
    try:
        rows = lines(ccxctl(alpha, "nodes"))
        assert rows[0] == ["name", "state", "labels", "slots", "load", "version", "heartbeat"]
        assert len(rows) == 2
        name, state, labels, slots, load, version, heartbeat = rows[1]
        assert (name, state, labels, slots) == ("alpha", "up", "gpu=1,os=debian", "1/3")
        assert float(load) >= 0 and version and heartbeat == "0s ago"
        listed = json.loads(ccxctl(alpha, "nodes", "--json", fast=False).stdout)
        assert [(n["name"], n["state"], n["used"], n["slots"]) for n in listed] == [("alpha", "up", 1, 3)]
        assert listed[0]["labels"] == {"gpu": "1", "os": "debian"}
        assert abs(listed[0]["heartbeat"] - time.time()) < 30
    finally:
        ccxctl(alpha, "cancel", job)


def test_drain_and_cordon_outside_a_fleet_say_why_without_a_traceback(alpha):
    for verb in ("drain", "cordon", "uncordon"):
        res = ccxctl(alpha, "nodes", verb, "alpha")
        assert res.returncode == 2 and b"Traceback" not in res.stderr
        assert res.stderr.decode().startswith(f"ccxctl: node.{verb} needs fleet mode (fleet = true): 'alpha'")
    unknown = ccxctl(alpha, "nodes", "cordon", "beta")
    assert unknown.returncode == 1
    assert unknown.stderr == b"ccxctl: no node named 'beta' (ccxctl nodes lists them)\n"
    bad = ccxctl(alpha, "nodes", "drain", "no/such")
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr
    assert b"Expected a node name" in bad.stderr and b"$.params.name" in bad.stderr


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "gpu"], "'gpu': expected KEY=VALUE, a label the node must have"),
        (["--where", "a b=1"], "'a b=1': the key 'a b' is no label"),
        (["--where", "gpu="], "'gpu=': the value '' is no label"),
        (["--where", "gpu=1", "--where", "gpu=2"], "gpu is given twice, as '1' and '2'"),
        (["--node", "no/such"], "'no/such' is no node name"),
    ],
)
def test_bad_where_or_node_is_a_usage_error_before_anything_runs(alpha, tmp_root, fast, args, message):
    marker = tmp_root / "ran"
    res = ccxctl(alpha, "run", *args, f"touch {marker}", fast=fast)
    err = res.stderr.decode()
    assert res.returncode == 2 and "Traceback" not in err, err
    assert message in " ".join(err.split())  # typer may wrap the line
    assert "--where" in err or "--node" in err
    assert not marker.exists()


@pytest.mark.parametrize("fast", [True, False])
def test_where_and_node_that_this_daemon_matches_run_and_others_are_refused(alpha, fast):
    ok = ccxctl(
        alpha, "run", "--where", "gpu=1", "--where", "os=debian", "--node", "alpha", "echo here", fast=fast
    )
    assert (ok.returncode, ok.stdout) == (0, b"here\n")
    flagged = ccxctl(alpha, "run", "--retry-on-node-loss", "echo again", fast=fast)
    assert (flagged.returncode, flagged.stdout) == (0, b"again\n")
    elsewhere = ccxctl(alpha, "run", "--where", "gpu=2", "echo never", fast=fast)
    assert elsewhere.returncode == 2 and elsewhere.stdout == b""
    assert b"$.params.where.gpu" in elsewhere.stderr and b"Traceback" not in elsewhere.stderr
    other = ccxctl(alpha, "run", "--node", "beta", "echo never", fast=fast)
    assert other.returncode == 2 and b"$.params.node" in other.stderr


def test_ps_and_history_filter_by_node(alpha):
    job = ccxctl(alpha, "run", "--detach", "sleep 60").stdout.decode().strip()
    try:
        mine = lines(ccxctl(alpha, "ps", "--node", "alpha"))
        assert [r[0] for r in mine[1:]] == [job]
        assert "node" not in mine[0]  # one node's jobs: no NODE column
        assert lines(ccxctl(alpha, "ps", "--node", "beta"))[1:] == []
        ran = ccxctl(alpha, "run", "echo stored").stdout
        assert ran == b"stored\n"
        stored = json.loads(ccxctl(alpha, "history", "list", "--node", "alpha", "--json").stdout)
        assert {j["node"] for j in stored} == {"alpha"} and job in {j["id"] for j in stored}
        assert json.loads(ccxctl(alpha, "history", "list", "--node", "beta", "--json").stdout) == []
    finally:
        ccxctl(alpha, "cancel", job)


def test_job_tables_get_a_node_column_when_jobs_ran_on_several_nodes():
    def job(i: str, node: str) -> JobInfo:
        return JobInfo(
            id=i, state=JobState.QUEUED if not node else JobState.RUNNING, command="true", node=node
        )

    headers, rows = job_rows([job("a", "n1"), job("b", "n2"), job("c", "")])
    column = headers.index("node")
    assert [r[column] for r in rows] == ["n1", "n2", "-"]
    assert headers[-1] == "command"
    assert "node" not in job_rows([job("a", "n1"), job("b", "n1")])[0]


def test_node_rows_show_slots_used_of_total_and_the_heartbeat_age():
    now = 1_800_000_000.0
    nodes = [
        NodeInfo(name="a", labels={"os": "debian", "gpu": "1"}, slots=8, used=3, load=0.5, version="1.2",
                 heartbeat=now - 65, state="draining"),
        NodeInfo(name="b", slots=4, heartbeat=now - 7300, state="lost"),
    ]  # fmt: skip
    _, rows = node_rows(nodes, now)
    assert rows == [
        ["a", "draining", "gpu=1,os=debian", "3/8", "0.50", "1.2", "1m05s ago"],
        ["b", "lost", "-", "0/4", "0.00", "-", "2h01m ago"],
    ]
    assert age(-3) == "0s ago"  # a clock a little ahead of ours
