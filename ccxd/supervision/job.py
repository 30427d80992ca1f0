"""Moved to :mod:`ccxd.jobs.job` (the job model is below its watchers); kept for old importers."""

from ccxd.jobs.job import *  # noqa: F403
from ccxd.jobs.job import __all__ as __all__
