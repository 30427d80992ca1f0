"""Moved to :mod:`ccxd.proc.tree` (issue 20: processes are the bottom layer); kept for old importers."""

from ccxd.proc.tree import *  # noqa: F403
from ccxd.proc.tree import __all__ as __all__
from ccxd.proc.tree import read_stat

_read_stat = read_stat  # the old private name, still imported by supervision/shimjob.py
