"""Results as rows, rendered to a Markdown table and a JSON file (no measuring here)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Row", "render_markdown", "write_results"]


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

    @property
    def met(self) -> bool | None:
        """Whether the goal is met (None when the row has no goal)."""
        x = self.value if self.goal_on_value else self.ratio
        if self.goal is None or math.isnan(x):
            return None
        return x >= self.goal if self.higher_is_better else x <= self.goal

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
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
    return f"{sign} {_num(row.goal)}{unit} {mark}".strip()


def render_markdown(rows: list[Row], machine: dict[str, Any], quick: bool) -> str:
    """The results table with the machine it ran on."""
    lines = [
        "| Case | Metric | ccxd | Peer / limit | Peer | Ratio | Goal | Runs |",
        "|---|---|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        peer = r.peer.replace("|", "\\|")
        lines.append(
            f"| {r.case} | {r.metric} ({r.unit}) | {_num(r.value)} | {peer} | {_num(r.peer_value)} "
            f"| {_num(r.ratio)} {r.ratio_label} | {_goal(r)} | {r.runs} |"
        )
    notes = [f"* **{r.case} / {r.metric}**: {r.note}" for r in rows if r.note]
    head = [
        "# ccxd benchmark results" + (" (--quick: sizes cut down, figures not meaningful)" if quick else ""),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "Values are medians of interleaved runs (ccxd and its peer alternate within each round).",
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
