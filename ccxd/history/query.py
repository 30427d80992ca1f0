"""Moved to :mod:`ccxd.store.query` (issue 20: the store filters records and sits below history/)."""

from ccxd.store.query import Matcher

__all__ = ["Matcher"]
