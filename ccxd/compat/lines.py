"""One stream's output cut into lines; it lives in :mod:`ccxd.protocol.lines`, which both ends import."""

from __future__ import annotations

from ccxd.protocol.lines import LINE_LIMIT, LineSplitter

__all__ = ["LINE_LIMIT", "LineSplitter"]
