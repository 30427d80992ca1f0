"""The per-job monitor: events in output order, a bounded window, stall and exit-grace endings."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec

from ccxd.claude.monitor import ClaudeMonitor
from ccxd.jobs.job import Job
from ccxd.output.log import OutputLog
from ccxd.protocol import JobReason, Notification, StartParams


def make(stall: float | None = None, grace: float = 30.0) -> tuple[Job, ClaudeMonitor]:
    params = StartParams(command=["claude", "-p", "x", "--output-format", "stream-json"])
    job = Job(
        "j1", params, argv=list(params.command or []), shell=None, cwd="/", log=OutputLog(1 << 20),
        node="n", peer="", timeout=None, idle_timeout=None,
    )  # fmt: skip
    mon = ClaudeMonitor(job, structured=True, stall_timeout=stall, exit_grace=grace, session_id="pre")
    job.kind_state = job.observer = mon
    return job, mon


def feed(job: Job, mon: ClaudeMonitor, stream: int, data: bytes) -> None:
    mon.output(stream, job.log.append(stream, data))


def line(**event: object) -> bytes:
    return json.dumps(event).encode() + b"\n"


def decode(wires: list[bytes]) -> list[dict[str, object]]:
    return [msgspec.json.decode(w, type=Notification).params for w in wires]


async def test_events_carry_the_offset_where_their_line_ended() -> None:
    job, mon = make()
    init = line(type="system", subtype="init", session_id="s1", model="m")
    feed(job, mon, 0, init[:10])
    feed(job, mon, 1, b"some stderr noise\n")
    feed(
        job, mon, 0, init[10:] + line(type="assistant", message={"content": [{"type": "text", "text": "hi"}]})
    )
    wires, nxt = mon.events_after(0, 0, None)
    notes = decode(wires)
    assert [n["seq"] for n in notes] == [0, 1] and nxt == 2
    assert [n["event"]["kind"] for n in notes] == ["init", "assistant"]  # type: ignore[index]
    assert notes[0]["offset"] == notes[1]["offset"] == job.log.size
    # A subscriber that has only seen the first chunks gets nothing yet; one resuming past them nothing old.
    assert mon.events_after(0, 0, 10) == ([], 0)
    assert mon.events_after(0, job.log.size, None) == ([], 2)
    assert mon.info.session_id == "s1" and mon.info.model == "m" and mon.info.events == 2


async def test_result_then_exit_fills_the_record() -> None:
    job, mon = make()
    feed(job, mon, 0, line(type="system", subtype="init", session_id="s1"))
    result = line(
        type="result", subtype="success", is_error=False, result="done", session_id="s2", total_cost_usd=0.5,
        num_turns=2, usage={"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 5},
    )  # fmt: skip
    feed(job, mon, 0, result[:-1])  # the last line may lack its newline
    mon.exited(0, None)
    info = mon.snapshot()
    assert (info.ok, info.error_class, info.result, info.session_id) == (True, None, "done", "s2")
    assert (info.cost_usd, info.input_tokens, info.output_tokens, info.cache_read_tokens, info.turns) == (
        0.5, 3, 4, 5, 2,
    )  # fmt: skip
    assert job.info().claude == info


async def test_silence_stops_the_job_as_a_stall() -> None:
    job, mon = make(stall=0.05)
    stopped: list[JobReason] = []
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="system", subtype="init"))
    feed(job, mon, 1, b"stderr output is not an event\n")
    while not stopped:
        await asyncio.sleep(0.01)
    assert stopped == [JobReason.IDLE_TIMEOUT]
    mon.exited(None, 15)
    assert mon.info.error_class == "stall"


async def test_alive_after_result_is_ended() -> None:
    job, mon = make(grace=0.05)
    stopped: list[JobReason] = []
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="result", subtype="success", is_error=False, result="ok"))
    while not stopped:
        await asyncio.sleep(0.01)
    assert stopped == [JobReason.EXITED]
    mon.exited(None, 15)
    assert (mon.info.error_class, mon.info.ok) == ("hung_after_result", True)


async def test_exiting_in_time_cancels_the_grace() -> None:
    job, mon = make(grace=0.05)
    stopped: list[JobReason] = []
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="result", subtype="success", is_error=False, result="ok"))
    mon.exited(0, None)
    await asyncio.sleep(0.1)
    assert stopped == [] and mon.info.error_class is None


async def test_the_event_window_is_bounded_by_bytes() -> None:
    job, mon = make()
    big = "x" * (1 << 20)
    for _ in range(20):
        feed(job, mon, 0, line(type="assistant", message={"content": [{"type": "text", "text": big}]}))
    wires, nxt = mon.events_after(0, 0, None)
    assert nxt == 20 and 0 < len(wires) < 20 and sum(map(len, wires)) <= 17 << 20


async def test_an_adopted_job_is_silent_since_its_last_output_not_since_its_adoption() -> None:
    job, mon = make(stall=5.0)
    stopped: list[JobReason] = []
    mon.started(stopped.append, since=time.monotonic() - 10)  # quiet for 10 s when adopted
    await asyncio.sleep(0.05)
    assert stopped == [JobReason.IDLE_TIMEOUT]
    mon.exited(None, 15)
    assert mon.info.error_class == "stall"


async def test_an_adopted_rendered_job_counts_its_events_file_as_output(tmp_path: Path) -> None:
    # A shell job rendered as text writes its events to a file; its text output may be old.
    events = tmp_path / "j1.claude"
    events.write_bytes(line(type="system", subtype="init", session_id="s1"))
    job, _ = make()
    mon = ClaudeMonitor(job, structured=True, stall_timeout=5.0, exit_grace=30.0, events_file=events)
    feed(job, mon, 0, b"text printed long ago\n")  # replayed at adoption: the events are read with it
    stopped: list[JobReason] = []
    mon.started(stopped.append, since=time.monotonic() - 10)
    await asyncio.sleep(0.1)
    assert stopped == [] and mon.info.session_id == "s1"
    mon.exited(0, None)


async def test_a_rendered_job_s_events_come_from_its_events_file(tmp_path: Path) -> None:
    # A shell-string job behind textview.py: stdout is text, the stream-json is in a file.
    params = StartParams(command="claude -p x")
    job = Job(
        "j2", params, argv=["zsh", "-c", "..."], shell="zsh", cwd="/", log=OutputLog(1 << 20),
        node="n", peer="", timeout=None, idle_timeout=None,
    )  # fmt: skip
    events = tmp_path / "j2.claude"
    mon = ClaudeMonitor(job, structured=True, stall_timeout=None, exit_grace=30.0, events_file=events)
    job.kind_state = job.observer = mon
    woken: list[bool] = []
    job.add_listener(lambda: woken.append(True))
    mon.started(lambda reason: None)  # no file yet: nothing to read
    events.write_bytes(line(type="system", subtype="init", session_id="s1", model="m"))
    mon._follow()
    # Read before any output: a subscriber from offset 0 still gets it.
    wires, nxt = mon.events_after(0, 0, None)
    assert [n["event"]["kind"] for n in decode(wires)] == ["init"] and nxt == 1  # type: ignore[index]
    assert woken and mon.info.session_id == "s1"
    with events.open("ab") as f:
        f.write(line(type="result", subtype="success", is_error=False, result="Four.", total_cost_usd=0.5))
    feed(job, mon, 0, b"Four.\n")  # the text comes after its result event: that is when it is read
    assert mon.info.result == "Four." and mon.info.cost_usd == 0.5
    mon.exited(0, None)
    assert mon.classification is not None and mon.classification.error_class is None


def make_budget(budget: float) -> tuple[Job, ClaudeMonitor]:
    params = StartParams(command=["claude", "-p", "x", "--output-format", "stream-json"], max_budget_usd=budget)
    job = Job(
        "j1", params, argv=list(params.command or []), shell=None, cwd="/", log=OutputLog(1 << 20),
        node="n", peer="", timeout=None, idle_timeout=None,
    )  # fmt: skip
    mon = ClaudeMonitor(job, structured=True, stall_timeout=None, exit_grace=30.0)
    job.kind_state = job.observer = mon
    return job, mon


async def test_a_result_over_the_budget_stops_the_job_as_budget_exceeded() -> None:
    job, mon = make_budget(0.1)
    stopped: list[JobReason] = []
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="result", subtype="success", is_error=False, result="ok", total_cost_usd=0.3))
    assert stopped == [JobReason.BUDGET_EXCEEDED]
    mon.exited(None, 15)
    info = mon.snapshot()
    assert info.error_class == "max_budget" and info.error == "cost $0.3000 passed the budget $0.1"


async def test_the_clis_own_budget_end_is_named_budget_exceeded_and_under_budget_is_not() -> None:
    job, mon = make_budget(1.0)
    stopped: list[JobReason] = []
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="result", subtype="success", is_error=False, result="ok", total_cost_usd=0.3))
    mon.exited(0, None)
    assert stopped == [] and mon.snapshot().error_class is None
    job, mon = make()  # no budget in the request: the flag was in the command
    mon.started(stopped.append)
    feed(job, mon, 0, line(type="result", subtype="error_max_budget_usd", is_error=True, total_cost_usd=0.3))
    mon.exited(1, None)
    assert stopped == [JobReason.BUDGET_EXCEEDED] and mon.snapshot().error_class == "max_budget"
