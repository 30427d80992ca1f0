"""Results as rows, rendered to a Markdown table and a JSON file (no measuring here)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import median

__all__ = ["ROUND_SLACK", "Row", "render_markdown", "write_results"]

ROUND_SLACK = 0.10
"""A goal is met when the median meets it and no round misses it by more than this fraction."""


@dataclass
class Row:
    """One figure: ccxd against a peer or a limit, measured in the same run.

    ``ratio`` is oriented so that the goal reads naturally (``ratio >= goal``
    when ``higher_is_better``, else ``ratio <= goal``).
    """

    case: str
    metric: str
    unit: str
    value: float
    peer: str
    peer_value: float
    ratio: float
    ratio_label: str
    goal: float | None = None
    higher_is_better: bool = True
    goal_on_value: bool = False
    """The goal bounds ``value`` itself (e.g. latency in ms), not the ratio."""
    runs: int = 1
    samples: list[float] = field(default_factory=list)
    peer_samples: list[float] = field(default_factory=list)
    note: str = ""
    rounds: list[float] = field(default_factory=list)
    """The figure the goal bounds, one per round (default: ``samples`` or their ratio to ``peer_samples``)."""
    cpu: float = math.nan
    """The daemon's CPU seconds (user + system, its own process) per ``cpu_unit``: median of rounds."""
    peer_cpu: float = math.nan
    """The peer's own process's CPU per ``cpu_unit`` (websocketd, cat, the asyncio loop), when it has one."""
    cpu_unit: str = ""
    cpu_samples: list[float] = field(default_factory=list)
    peer_cpu_samples: list[float] = field(default_factory=list)
    load: float = math.nan
    """The machine's 1-minute load average when the case started."""

    @property
    def round_figures(self) -> list[float]:
        """The goal's figure in each round."""
        if self.rounds:
            return self.rounds
        if self.goal_on_value or not self.peer_samples:
            return self.samples
        if len(self.samples) != len(self.peer_samples):
            return []
        return [a / b if b else math.nan for a, b in zip(self.samples, self.peer_samples, strict=True)]

    @property
    def spread(self) -> tuple[float, float, float]:
        """(min, median, max) of :attr:`round_figures`; NaNs when there are none."""
        figures = [x for x in self.round_figures if not math.isnan(x)]
        if not figures:
            return (math.nan, math.nan, math.nan)
        return (min(figures), median(figures), max(figures))

    @property
    def rounds_ok(self) -> bool | None:
        """False when some round misses the goal by more than ``ROUND_SLACK``."""
        lo, _, hi = self.spread
        if self.goal is None or math.isnan(lo):
            return None
        if self.higher_is_better:
            return lo >= self.goal * (1 - ROUND_SLACK)
        return hi <= self.goal * (1 + ROUND_SLACK) if self.goal > 0 else hi <= self.goal

    @property
    def met(self) -> bool | None:
        """Whether the goal is met: the median, and no round off by more than ``ROUND_SLACK`` (None without a goal)."""
        x = self.value if self.goal_on_value else self.ratio
        if self.goal is None or math.isnan(x):
            return None
        ok = x >= self.goal if self.higher_is_better else x <= self.goal
        return ok and self.rounds_ok is not False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        d["spread"] = list(self.spread)
        d["rounds_ok"] = self.rounds_ok
        return d


def _num(x: float) -> str:
    if math.isnan(x):
        return "–"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _goal(row: Row) -> str:
    if row.goal is None:
        return ""
    sign = "≥" if row.higher_is_better else "≤"
    met = row.met
    mark = "✅" if met else "❌" if met is not None else ""
    unit = f" {row.unit}" if row.goal_on_value else ""
    x = row.value if row.goal_on_value else row.ratio
    median_ok = x >= row.goal if row.higher_is_better else x <= row.goal
    worst = (
        f" (median met, a round off by > {ROUND_SLACK:.0%})" if median_ok and row.rounds_ok is False else ""
    )
    return f"{sign} {_num(row.goal)}{unit} {mark}{worst}".strip()


def _spread(row: Row) -> str:
    lo, mid, hi = row.spread
    if math.isnan(lo) or len(row.round_figures) < 2:
        return ""
    return f"{_num(lo)} / {_num(mid)} / {_num(hi)}"


def _cpu(row: Row) -> str:
    if math.isnan(row.cpu) and math.isnan(row.peer_cpu):
        return ""
    return f"{_num(row.cpu)} / {_num(row.peer_cpu)} {row.cpu_unit}".strip()


IDLE_LOAD = 0.5
"""A 1-minute load average above this at the start of a case means other work shared the machine."""


def render_markdown(rows: list[Row], machine: dict[str, Any], quick: bool) -> str:
    """The results table with the machine it ran on."""
    lines = [
        "| Case | Metric | ccxd | Peer / limit | Peer | Ratio | Rounds min / med / max | Goal "
        "| CPU ccxd / peer | Runs |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        peer = r.peer.replace("|", "\\|")
        busy = " ⚠" if r.load > IDLE_LOAD else ""
        lines.append(
            f"| {r.case} | {r.metric} ({r.unit}) | {_num(r.value)} | {peer} | {_num(r.peer_value)} "
            f"| {_num(r.ratio)} {r.ratio_label} | {_spread(r)} | {_goal(r)} | {_cpu(r)} | {r.runs}{busy} |"
        )
    notes = [f"* **{r.case} / {r.metric}**: {r.note}" for r in rows if r.note]
    head = [
        "# ccxd benchmark results" + (" (--quick: sizes cut down, figures not meaningful)" if quick else ""),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
    ]
    if machine.get("idle at start") is False:
        head += [
            f"**Not idle**: the load average at start was {machine.get('load at start')} (above {IDLE_LOAD}); "
            "rates are not comparable with an idle run (CPU per unit is steadier).",
            "",
        ]
    head += [
        "Values are medians of interleaved runs (ccxd and its peer alternate within each round); "
        "*Rounds* is the goal's figure in the worst, median and best round (a goal is met when the median "
        f"meets it and no round misses it by more than {ROUND_SLACK:.0%}); *CPU* is the daemon's own "
        "process (user + system, from /proc/PID/stat before and after each round) and the peer's own "
        f"process, per unit of work, medians of rounds; ⚠: the 1-minute load was above {IDLE_LOAD} when the "
        "case started.",
        "",
    ]
    tail = ["", "Notes:", "", *notes] if notes else []
    return "\n".join(head + lines + tail) + "\n"


def write_results(
    out: Path, rows: list[Row], machine: dict[str, Any], quick: bool, errors: dict[str, str]
) -> None:
    """Write ``results.md`` and ``results.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    md = render_markdown(rows, machine, quick)
    if errors:
        md += "\nCases that failed:\n\n" + "".join(f"* {k}: {v}\n" for k, v in errors.items())
    (out / "results.md").write_text(md)
    doc = {"quick": quick, "machine": machine, "rows": [r.as_dict() for r in rows], "errors": errors}
    (out / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
