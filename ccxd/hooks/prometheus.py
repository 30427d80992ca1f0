"""Prometheus text exposition (format 0.0.4) of the metrics hook's counters; no I/O.

Signatures are redacted again here (:func:`ccxd.redact.redact_text`): counters
stored before the metrics hook redacted them may hold a command's password.
"""

from __future__ import annotations

from collections.abc import Iterable

from ccxd.protocol import CommandMetrics
from ccxd.redact import redact_text

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _signature(m: CommandMetrics) -> str:
    return _label(redact_text(m.signature))


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(
    metrics: Iterable[CommandMetrics], jobs: dict[str, int], hook_runs: dict[tuple[str, str], int]
) -> str:
    """The exposition text: per-signature counters, job gauges and hook outcome counters."""
    items = list(metrics)
    lines = [
        "# HELP ccxd_command_runs_total Finished jobs per command signature and reason.",
        "# TYPE ccxd_command_runs_total counter",
    ]
    for m in items:
        for reason, n in sorted(m.reasons.items()):
            lines.append(
                f'ccxd_command_runs_total{{signature="{_signature(m)}",reason="{_label(reason)}"}} {n}'
            )
    lines += [
        "# HELP ccxd_command_exits_total Exit codes per command signature.",
        "# TYPE ccxd_command_exits_total counter",
    ]
    for m in items:
        for code, n in sorted(m.exit_codes.items()):
            lines.append(
                f'ccxd_command_exits_total{{signature="{_signature(m)}",code="{_label(code)}"}} {n}'
            )
    lines += [
        "# HELP ccxd_command_duration_seconds Run time per command signature.",
        "# TYPE ccxd_command_duration_seconds summary",
    ]
    for m in items:
        sig = _signature(m)
        lines.append(f'ccxd_command_duration_seconds_sum{{signature="{sig}"}} {_number(m.duration_sum)}')
        lines.append(f'ccxd_command_duration_seconds_count{{signature="{sig}"}} {m.count}')
    lines += ["# HELP ccxd_jobs Jobs of this daemon by state.", "# TYPE ccxd_jobs gauge"]
    for state, n in sorted(jobs.items()):
        lines.append(f'ccxd_jobs{{state="{_label(state)}"}} {n}')
    lines += [
        "# HELP ccxd_hook_runs_total Hook outcomes since the daemon started.",
        "# TYPE ccxd_hook_runs_total counter",
    ]
    for (name, result), n in sorted(hook_runs.items()):
        lines.append(f'ccxd_hook_runs_total{{hook="{_label(name)}",result="{_label(result)}"}} {n}')
    return "\n".join(lines) + "\n"
