"""Hostile session names through ccxctl and a real daemon with its embedded Redis.

The "attacker" here is a name a client chooses; no second uid is needed to give one.
"""

from __future__ import annotations

import json

from tests.ccxctl.test_ccxctl import ccxctl

HOSTILE = ["a:b", "*", "{x}", "new\nline", "s" * 200, "日本語 セッション", "50%", "%3A", ":"]


def as_json(daemon, *args: str):
    res = ccxctl(daemon, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_a_session_named_after_another_sessions_job_list_loses_nothing(daemon_factory, tmp_root):
    d = daemon_factory(root=tmp_root / "d")
    # The reproduction: "x:jobs" was session x's job list under the unescaped keys.
    assert ccxctl(d, "run", "--session", "x", "true").returncode == 0
    assert ccxctl(d, "run", "--session", "x:jobs", "true").returncode == 0
    for session, command in [("x", "echo one"), ("x:jobs", "echo two"), ("x:jobs:jobs", "echo three")]:
        assert ccxctl(d, "run", "--session", session, command).returncode == 0
    assert ccxctl(d, "run", "echo four").returncode == 0

    status = as_json(d, "status")
    assert status["store"] == "redis (embedded)" and status["store_health"]["refused"] == 0
    jobs = as_json(d, "history", "list")
    assert sorted(j["command"] for j in jobs) == sorted(
        ["true", "true", "echo one", "echo two", "echo three", "echo four"]
    )
    sessions = as_json(d, "sessions", "list")
    assert sorted((s["name"], s["jobs"]) for s in sessions) == [("x", 2), ("x:jobs", 2), ("x:jobs:jobs", 1)]
    assert [j["command"] for j in as_json(d, "history", "list", "--session", "x:jobs")] == ["echo two", "true"]

    # Nothing poisoned waits in a journal to be replayed by the next daemon.
    assert d.stop() == 0
    again = daemon_factory(root=tmp_root / "d")
    assert ccxctl(again, "run", "--session", "x:jobs", "echo five").returncode == 0
    status = as_json(again, "status")
    assert status["store"] == "redis (embedded)" and status["store_health"]["refused"] == 0
    assert len(as_json(again, "history", "list")) == 7
    sessions = as_json(again, "sessions", "list")
    assert sorted((s["name"], s["jobs"]) for s in sessions) == [("x", 2), ("x:jobs", 3), ("x:jobs:jobs", 1)]


def test_hostile_session_names_round_trip_through_history_and_sessions(daemon):
    ids = {}
    for i, name in enumerate(HOSTILE):
        res = ccxctl(daemon, "run", "--detach", "--session", name, f"echo {i}")
        assert res.returncode == 0, res.stderr
        ids[name] = res.stdout.decode().strip()
    assert ccxctl(daemon, "run", "true").returncode == 0  # after the detached ones: they are in the store
    sessions = as_json(daemon, "sessions", "list", "--limit", "100")
    assert sorted((s["name"], s["jobs"]) for s in sessions) == sorted((name, 1) for name in HOSTILE)
    for name in HOSTILE:
        [stored] = as_json(daemon, "history", "list", "--session", name)
        assert stored["id"] == ids[name] and stored["session"] == name
        shown = as_json(daemon, "sessions", "show", name)
        assert shown["session"]["name"] == name and [j["id"] for j in shown["jobs"]] == [ids[name]]
    assert as_json(daemon, "status")["store_health"]["refused"] == 0
    # Longer names are refused at the edge, in words.
    long = ccxctl(daemon, "run", "--session", "s" * 300, "true")
    assert long.returncode == 2 and b"length <= 200" in long.stderr
