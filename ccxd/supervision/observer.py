"""Moved to :mod:`ccxd.jobs.observer` (the job model is below its watchers); kept for old importers."""

from ccxd.jobs.observer import *  # noqa: F403
from ccxd.jobs.observer import __all__ as __all__
