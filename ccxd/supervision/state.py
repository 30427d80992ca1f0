"""Moved to :mod:`ccxd.jobs.state` (the job model is below its watchers); kept for old importers."""

from ccxd.jobs.state import *  # noqa: F403
from ccxd.jobs.state import __all__ as __all__
