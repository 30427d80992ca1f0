"""The benchmark harness's pure parts: statistics, goals and the rendered table."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.report import Row, render_markdown, write_results
from bench.stats import interleave, median, percentile


def test_median_and_percentile() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert math.isnan(median([]))
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == 99.01
    assert percentile([7.0], 99) == 7.0


def test_interleave_alternates_contenders() -> None:
    order: list[str] = []
    res = interleave(3, {"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2})
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert res == {"a": [1, 1, 1], "b": [2, 2, 2]}


def row(**kw: object) -> Row:
    base: dict[str, object] = dict(
        case="1 x", metric="m", unit="MiB/s", value=30.0, peer="a | b", peer_value=100.0, ratio=0.3, ratio_label="of"
    )
    base.update(kw)
    return Row(**base)  # type: ignore[arg-type]


def test_goal_direction_and_target() -> None:
    assert row(goal=0.3).met is True
    assert row(goal=0.31).met is False
    assert row(goal=4.0, ratio=4.5, higher_is_better=False).met is False
    assert row(goal=1.0, value=0.8, ratio=9.0, higher_is_better=False, goal_on_value=True).met is True
    assert row().met is None


def test_markdown_escapes_pipes_and_marks_goals(tmp_path: Path) -> None:
    text = render_markdown([row(goal=0.3)], {"cpu": "X"}, quick=False)
    assert "a \\| b" in text and "≥ 0.3 ✅" in text and "cpu X" in text
    write_results(tmp_path, [row(goal=0.5)], {"cpu": "X"}, quick=True, errors={"scale": "boom"})
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["rows"][0]["met"] is False and doc["errors"] == {"scale": "boom"}
    assert "scale: boom" in (tmp_path / "results.md").read_text()


def test_a_round_far_below_the_goal_fails_it_and_the_spread_shows_it() -> None:
    steady = row(goal=0.3, ratio=0.31, samples=[31.0, 30.0, 32.0], peer_samples=[100.0, 100.0, 100.0])
    assert steady.spread == (0.30, 0.31, 0.32) and steady.met is True
    dipped = row(goal=0.3, ratio=0.31, samples=[31.0, 25.0, 32.0], peer_samples=[100.0, 100.0, 100.0])
    assert dipped.rounds_ok is False and dipped.met is False
    text = render_markdown([dipped], {}, quick=False)
    assert "0.25 / 0.31 / 0.32" in text and "a round off by > 10%" in text
    # Lower is better: a round 10 % above the goal still counts, 20 % does not.
    assert row(goal=1.0, value=0.9, goal_on_value=True, higher_is_better=False, samples=[0.9, 1.1]).met is True
    assert row(goal=1.0, value=0.9, goal_on_value=True, higher_is_better=False, samples=[0.9, 1.2]).met is False


def test_cpu_per_unit_and_a_busy_machine_are_shown() -> None:
    r = row(cpu=0.49, peer_cpu=0.64, cpu_unit="ms/job", load=3.0)
    text = render_markdown([r], {"load at start": "3.00 2.00 1.00", "idle at start": False}, quick=False)
    assert "0.49 / 0.64 ms/job" in text and "**Not idle**" in text and "| 1 ⚠ |" in text
    assert "Not idle" not in render_markdown([row()], {"idle at start": True}, quick=False)
    assert json.loads(json.dumps(r.as_dict()))["cpu"] == 0.49
