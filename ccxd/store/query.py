"""Matching job records against a history query (no I/O)."""

from __future__ import annotations

import re

from ccxd.protocol import HistoryParams, JobInfo

__all__ = ["Matcher"]


class Matcher:
    """Tests records against the filters of one ``history.list`` query."""

    def __init__(self, query: HistoryParams) -> None:
        self.query = query
        try:
            self.pattern = re.compile(query.grep) if query.grep else None
        except re.error as exc:
            raise ValueError(
                f"invalid regular expression {query.grep!r}: {exc} - at `$.params.grep`"
            ) from None

    @property
    def filters(self) -> bool:
        """True when records beyond the index order must be inspected."""
        q = self.query
        return bool(self.pattern or q.status or q.node or q.session)

    def __call__(self, info: JobInfo) -> bool:
        """True when ``info`` passes every filter."""
        q = self.query
        if q.session is not None and info.session != q.session:
            return False
        if q.since is not None and info.queued_at < q.since:
            return False
        if q.status and q.status not in (info.state.value, info.reason.value if info.reason else None):
            return False
        if q.node and info.node != q.node:
            return False
        if self.pattern is not None:
            text = info.command if isinstance(info.command, str) else " ".join(info.command)
            if not self.pattern.search(text):
                return False
        return True
