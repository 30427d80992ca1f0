"""Moved to :mod:`ccxd.proc.reaper` (issue 20: processes are the bottom layer); kept for old importers."""

from ccxd.proc.reaper import *  # noqa: F403
from ccxd.proc.reaper import __all__ as __all__
