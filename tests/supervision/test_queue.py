"""The scheduler core: priority then age, groups, pauses, dependencies (no processes)."""

from __future__ import annotations

from ccxd.supervision.queue import JobQueue, priority_value


def always(_job_id: str) -> bool:
    return True


def test_priority_first_then_age() -> None:
    q = JobQueue()
    q.add("low", "low", priority=priority_value("low"))
    q.add("n1", "n1")
    q.add("high", "high", priority=priority_value("high"))
    q.add("n2", "n2", priority=priority_value("normal"))
    q.add("seven", "seven", priority=7)
    assert [job_id for _, job_id in q.positions()] == ["high", "seven", "n1", "n2", "low"]
    assert q.pick(2, always) == ["high", "seven"]
    assert q.pick(10, always) == ["n1", "n2", "low"]
    assert len(q) == 0


def test_add_answers_the_position_and_later_jobs_move_back() -> None:
    q = JobQueue()
    assert q.add("a", "a") == 1
    assert q.add("b", "b") == 2
    assert q.add("urgent", "urgent", priority=10) == 1
    assert list(q.positions()) == [(1, "urgent"), (2, "a"), (3, "b")]
    assert list(q.positions(3)) == [(3, "b")]


def test_a_full_group_lets_other_jobs_pass() -> None:
    limits = {"build": 1}
    q = JobQueue(limits.get)
    for name in ("b1", "b2"):
        q.add(name, name, groups=["build"])
    q.add("other", "other")
    assert q.pick(10, always) == ["b1", "other"]
    assert q.hold("b2") == "group build full (1/1)"
    assert (q.group("build").running, q.group("build").queued) == (1, 1)
    q.finished(["build"])
    assert q.hold("b2") is None
    assert q.pick(10, always) == ["b2"]


def test_a_runtime_limit_wins_over_the_configured_one() -> None:
    q = JobQueue({"build": 1}.get)
    q.group("build").override = 3
    for name in ("a", "b", "c", "d"):
        q.add(name, name, groups=["build"])
    assert q.pick(10, always) == ["a", "b", "c"]


def test_a_paused_group_holds_its_queued_jobs_until_resumed() -> None:
    q = JobQueue()
    q.group("nightly").paused = True
    q.add("n", "n", groups=["nightly"])
    q.add("x", "x")
    assert q.pick(10, always) == ["x"]
    assert q.hold("n") == "group nightly paused"
    q.group("nightly").paused = False
    assert q.pick(10, always) == ["n"]


def test_a_job_in_two_groups_needs_room_in_both() -> None:
    q = JobQueue({"claude": 1, "build": 5}.get, {"claude": "claude concurrency limit"}.get)
    q.started(["claude"])
    q.add("c", "c", groups=["build", "claude"])
    assert q.pick(10, always) == []
    assert q.hold("c") == "claude concurrency limit"
    q.finished(["claude"])
    assert q.pick(10, always) == ["c"]


def test_the_gate_may_hold_a_job_and_those_behind_it_start() -> None:
    q = JobQueue()
    q.add("waits", "waits")
    q.add("next", "next")
    assert q.pick(10, lambda job_id: job_id != "waits") == ["next"]
    assert q.first_ready() == "waits"


def test_slots_bound_the_pick() -> None:
    q = JobQueue()
    for i in range(5):
        q.add(str(i), str(i))
    assert q.pick(0, always) == []
    assert q.pick(2, always) == ["0", "1"]


def test_after_waits_for_success_and_fails_otherwise() -> None:
    q = JobQueue()
    assert q.add("ok-dep", "ok-dep", after=["a"]) is None
    q.add("bad-dep", "bad-dep", after=["b"])
    q.add("any-dep", "any-dep", after_any=["b"])
    assert q.hold("ok-dep") == "job a (after)"
    assert q.hold("any-dep") == "job b (after-any)"
    assert q.pick(10, always) == []
    assert q.ended("a", succeeded=True) == (["ok-dep"], [])
    assert q.ended("b", succeeded=False) == (["any-dep"], ["bad-dep"])
    assert "bad-dep" not in q
    assert q.pick(10, always) == ["ok-dep", "any-dep"]


def test_a_job_waiting_for_several_starts_after_the_last() -> None:
    q = JobQueue()
    q.add("j", "j", after=["a", "b"], after_any=["c"])
    assert q.ended("a", True) == ([], [])
    assert q.ended("c", False) == ([], [])
    assert q.ended("b", True) == (["j"], [])


def test_removing_a_waiting_job_forgets_what_it_waited_for() -> None:
    q = JobQueue({"g": 1}.get)
    q.add("j", "j", after=["a"], groups=["g"])
    assert q.group("g").queued == 1
    q.remove("j")
    assert q.group("g").queued == 0 and len(q) == 0
    assert q.ended("a", True) == ([], [])


def test_cycles_are_found_through_queued_jobs() -> None:
    q = JobQueue()
    q.add("b", "b", after=["a"])
    q.add("c", "c", after_any=["b"])
    assert q.cycle("a", ["c"]) == ["a", "c", "b", "a"]
    assert q.cycle("a", ["a"]) == ["a", "a"]
    assert q.cycle("d", ["c"]) is None


def test_a_retry_attempt_takes_its_place_for_waiting_jobs() -> None:
    q = JobQueue()
    q.add("j", "j", after=["first"])
    q.transfer("first", "second")
    assert q.hold("j") == "job second (after)"
    assert q.ended("first", False) == ([], [])
    assert q.ended("second", True) == (["j"], [])
