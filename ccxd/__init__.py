"""ccxd: a supervisor daemon for shell and Claude Code jobs."""

__version__ = "0.1.0"
