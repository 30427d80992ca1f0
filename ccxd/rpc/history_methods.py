"""Handlers for ``history.*`` and ``session.*``: stored jobs, statistics, sessions."""

from __future__ import annotations

from collections.abc import Callable

from ccxd.errors import RpcError
from ccxd.history.estimate import Sample, estimate, percentile
from ccxd.history.service import History
from ccxd.history.signature import signature
from ccxd.protocol import (
    ErrorCode,
    HistoryParams,
    JobInfo,
    JobList,
    PruneParams,
    PruneResult,
    SessionDetail,
    SessionList,
    SessionListParams,
    SessionRef,
    SignatureStats,
    StatsParams,
    StatsResult,
)
from ccxd.rpc.connection import Connection
from ccxd.rpc.dispatcher import Dispatcher
from ccxd.store.base import StoreUnavailable
from ccxd.store.query import Matcher
from ccxd.supervision.supervisor import Supervisor

__all__ = ["register_history_methods"]


def _unavailable(exc: StoreUnavailable) -> RpcError:
    return RpcError(ErrorCode.STORE_UNAVAILABLE, f"history is unavailable: {exc}")


def register_history_methods(dispatcher: Dispatcher, history: History, sup: Supervisor) -> None:
    """Register the history and session methods."""
    store = history.store

    def live(query: HistoryParams) -> list[JobInfo]:
        # Jobs this daemon holds may be newer than what the write-behind has stored.
        match = Matcher(query)
        return [j.info() for j in sup.jobs.values() if match(j.info())]

    async def history_list(p: HistoryParams, conn: Connection) -> JobList:
        try:
            Matcher(p)
        except ValueError as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        try:
            stored = await store.list_jobs(p)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from None
        merged = {j.id: j for j in stored}
        merged.update({j.id: j for j in live(p)})
        jobs = sorted(merged.values(), key=lambda j: j.queued_at, reverse=True)[: p.limit]
        return JobList(jobs=jobs)

    async def history_stats(p: StatsParams, conn: Connection) -> StatsResult:
        settings = history.recorder.settings()
        try:
            sigs = [signature(p.command)] if p.command else await store.signatures(p.limit)
            out = []
            for sig in sigs:
                runs = await store.durations(sig, 200)
                if not runs:
                    continue
                samples = [Sample(r.duration, r.ok, r.censored) for r in runs]
                ok = [s.duration for s in samples if s.ok]
                est = estimate(
                    samples,
                    default=settings.default,
                    k=settings.k,
                    min_samples=settings.min_samples,
                    bootstrap=settings.bootstrap,
                )
                out.append(
                    SignatureStats(
                        signature=sig,
                        count=len(samples),
                        successes=len(ok),
                        timeouts=sum(1 for s in samples if s.censored),
                        success_rate=round(len(ok) / len(samples), 4),
                        p50=round(percentile(ok, 50), 6) if ok else None,
                        p95=round(percentile(ok, 95), 6) if ok else None,
                        estimate=est.timeout,
                        basis=est.basis,
                    )
                )
        except StoreUnavailable as exc:
            raise _unavailable(exc) from None
        return StatsResult(signatures=out)

    async def history_prune(p: PruneParams, conn: Connection) -> PruneResult:
        older = p.older_than
        keep = p.keep
        if older is None and keep is None:
            c = history.config
            older = c.history_max_age_days * 86400 if c.history_max_age_days is not None else None
            keep = c.history_max_jobs
        try:
            return PruneResult(removed=await store.prune(older, keep))
        except StoreUnavailable as exc:
            raise _unavailable(exc) from None

    async def session_list(p: SessionListParams, conn: Connection) -> SessionList:
        try:
            return SessionList(sessions=await store.sessions(p.limit))
        except StoreUnavailable as exc:
            raise _unavailable(exc) from None

    async def session_get(p: SessionRef, conn: Connection) -> SessionDetail:
        try:
            detail = await store.session(p.name, 1000)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from None
        if detail is None:
            raise RpcError(ErrorCode.SESSION_NOT_FOUND, f"no session named {p.name!r}", {"session": p.name})
        return detail

    table: dict[str, Callable[..., object]] = {
        "history.list": history_list,
        "history.stats": history_stats,
        "history.prune": history_prune,
        "session.list": session_list,
        "session.get": session_get,
    }
    for name, handler in table.items():
        dispatcher.register(name, handler)  # type: ignore[arg-type]
