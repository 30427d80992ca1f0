"""Moved to :mod:`ccxd.proc.spawn` (issue 20: processes are the bottom layer); kept for old importers."""

from ccxd.proc.spawn import *  # noqa: F403
from ccxd.proc.spawn import __all__ as __all__
from ccxd.proc.spawn import _explain as _explain
