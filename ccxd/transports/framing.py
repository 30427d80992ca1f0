"""Newline framing with a size limit; it lives in :mod:`ccxd.protocol.framing`, which both ends import."""

from __future__ import annotations

from ccxd.protocol.framing import LineFramer, TooLarge

__all__ = ["LineFramer", "TooLarge"]
