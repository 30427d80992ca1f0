"""Moved to :mod:`ccxd.protocol.claude_events` (issue 20: protocol is below claude/); kept for importers."""

from ccxd.protocol.claude_events import *  # noqa: F403
from ccxd.protocol.claude_events import __all__ as __all__
