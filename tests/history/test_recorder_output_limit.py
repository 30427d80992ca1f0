"""Output past ``store_output_max_bytes`` never enters the store's write queue."""

from __future__ import annotations

from pathlib import Path

from ccxd.history.recorder import EstimateSettings, Recorder
from ccxd.output.log import Chunk
from ccxd.store.memory import MemoryStore
from ccxd.store.ops import AppendOutput
from ccxd.store.writer import StoreWriter


def settings() -> EstimateSettings:
    return EstimateSettings(enabled=False, default=None, k=3.0, min_samples=5, bootstrap=None)


async def test_chunks_past_the_limit_are_not_queued(tmp_path: Path) -> None:
    store = MemoryStore("n1", output_limit=100)
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    rec = Recorder(store, writer, settings, output_limit=100)
    rec.output("j1", Chunk(0, 0, 0, b"a" * 60))
    rec.output("j1", Chunk(1, 1, 60, b"b" * 40))  # ends exactly at the limit: kept
    rec.output("j1", Chunk(2, 0, 100, b"c" * 10_000))  # past it: the store would drop it
    assert writer.pending == 2
    writer.start()
    assert await writer.flush(5)
    chunks = await store.read_output("j1", 0, 1 << 20)
    assert b"".join(c.data for c in chunks) == b"a" * 60 + b"b" * 40
    await writer.close()


async def test_without_a_limit_every_chunk_is_queued(tmp_path: Path) -> None:
    store = MemoryStore("n1")
    writer = StoreWriter(store, tmp_path / "journal", journal_limit=1 << 20)
    rec = Recorder(store, writer, settings)
    for i in range(3):
        rec.output("j1", Chunk(i, 0, i * 10, b"x" * 10))
    assert writer.pending == 3
    assert all(isinstance(op, AppendOutput) for op in writer._queue)
    writer.start()
    assert await writer.flush(5)
    await writer.close()
