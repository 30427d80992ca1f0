"""Moved to :mod:`ccxd.jobs.jobfile` (the job model is below its watchers); kept for old importers."""

from ccxd.jobs.jobfile import *  # noqa: F403
from ccxd.jobs.jobfile import __all__ as __all__
