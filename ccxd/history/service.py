"""History as the daemon uses it: the store, its writer, the recorder, and the embedded Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ccxd.config import Config
from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.store.base import Store, StoreUnavailable
from ccxd.store.embedded import EmbeddedRedis
from ccxd.store.memory import MemoryStore
from ccxd.store.redis_store import RedisStore
from ccxd.store.writer import StoreWriter
from ccxd.supervision.reaper import Reaper

__all__ = ["History"]

log = logging.getLogger("ccxd.history")

_RETENTION_INTERVAL = 60.0


class History:
    """Everything the daemon keeps beyond its own memory."""

    def __init__(
        self, config: Config, store: Store, writer: StoreWriter, embedded: EmbeddedRedis | None
    ) -> None:
        self.config = config
        self.store = store
        self.writer = writer
        self.embedded = embedded
        self.recorder = Recorder(
            store, writer, self._estimate_settings, output_limit=config.store_output_max_bytes
        )
        self._retention: asyncio.Task[None] | None = None

    def _estimate_settings(self) -> EstimateSettings:
        c = self.config
        return EstimateSettings(
            enabled=c.estimate_timeouts,
            default=c.default_timeout,
            k=c.estimate_k,
            min_samples=c.estimate_min_samples,
            bootstrap=c.estimate_bootstrap,
            minimum=c.estimate_min,
            floor=c.estimate_floor,
            silence=c.estimate_silence,
        )

    @classmethod
    async def open(cls, config: Config, reaper: Reaper, runtime_dir: Path, state_dir: Path) -> History:
        """Start the embedded Redis if needed and connect; raises RedisMissing/StoreUnavailable."""
        node = config.resolved_node_id()
        embedded = None
        store: Store
        if config.store == "memory":
            store = MemoryStore(node, output_limit=config.store_output_max_bytes)
        else:
            url = config.redis_url
            if not url:
                embedded = EmbeddedRedis(runtime_dir, state_dir / "redis", reaper)
                await embedded.start()
                url = embedded.url
            store = RedisStore(
                url, node, timeout=config.store_timeout, output_limit=config.store_output_max_bytes
            )
        await store.open()
        writer = StoreWriter(store, state_dir / "journal", journal_limit=config.journal_max_bytes)
        writer.start()
        return cls(config, store, writer, embedded)

    def start_retention(self) -> None:
        """Prune old history in the background."""
        c = self.config

        def max_age() -> float | None:
            return c.history_max_age_days * 86400 if c.history_max_age_days is not None else None

        self._retention = asyncio.get_running_loop().create_task(
            self.recorder.retention(
                _RETENTION_INTERVAL, max_age, lambda: c.history_max_jobs, lambda: c.history_max_signatures
            )
        )

    def describe(self) -> str:
        """``redis (embedded)``, ``redis``, ``memory``, or ``… degraded (N pending)``."""
        text = self.writer.describe()
        if self.embedded is not None and not self.writer.degraded:
            text += " (embedded)"
        return text

    async def close(self) -> None:
        """Flush writes, stop retention, disconnect and stop the embedded Redis."""
        if self._retention is not None:
            self._retention.cancel()
        await self.writer.close(timeout=5.0)
        with contextlib.suppress(StoreUnavailable):
            await self.store.close()
        if self.embedded is not None:
            await self.embedded.stop()
