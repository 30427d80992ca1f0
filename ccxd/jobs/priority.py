"""Job priorities: names and numbers (no I/O)."""

from __future__ import annotations

from typing import Final

__all__ = ["PRIORITIES", "priority_value"]

PRIORITIES: Final = {"high": 10, "normal": 0, "low": -10}
"""Named priorities; a number may be given instead (higher starts first)."""


def priority_value(priority: str | int) -> int:
    """The number of a priority: ``high`` 10, ``normal`` 0, ``low`` -10, or the number given."""
    return priority if isinstance(priority, int) else PRIORITIES[priority]
