"""Moved to :mod:`ccxd.jobs.lifecycle` (the job model is below its watchers); kept for old importers."""

from ccxd.jobs.lifecycle import *  # noqa: F403
from ccxd.jobs.lifecycle import __all__ as __all__
