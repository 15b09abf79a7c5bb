"""ArchiveSink: one chunk is stored while the next fills, the manifest keeps the chunks'
order, close waits for every chunk, and a store that fails is raised, not lost."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.blobs.local import LocalBlobStore
from handlers.tasks.archive_out import ArchiveSink

CHUNK = 64 * 1024


class GatedBlobs:
    """A blob store whose puts wait until the test lets each one through."""

    def __init__(self) -> None:
        self.started: list[bytes] = []
        self.gates: list[asyncio.Event] = []
        self.fail_at: int | None = None
        self.arrived = asyncio.Condition()

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        data = b"".join([c async for c in chunks])
        gate = asyncio.Event()
        self.started.append(data)
        self.gates.append(gate)
        async with self.arrived:
            self.arrived.notify_all()
        await gate.wait()
        if self.fail_at == len(self.started) - 1:
            raise OSError("disk full")
        return hashlib.sha256(data).hexdigest(), len(data)


async def started(blobs: GatedBlobs, n: int) -> None:
    """Until the n-th put has reached the store (it runs as a task of its own)."""
    async with blobs.arrived:
        await blobs.arrived.wait_for(lambda: len(blobs.started) >= n)


async def test_the_next_chunk_fills_while_one_is_stored_and_order_is_kept() -> None:
    blobs = GatedBlobs()
    sink = ArchiveSink(blobs, CHUNK)  # type: ignore[arg-type]
    data = [bytes([i]) * CHUNK for i in range(2)]
    await sink.write(data[0])
    await started(blobs, 1)
    # The first chunk is being stored: half of the next one is taken at once...
    await asyncio.wait_for(sink.write(data[1][: CHUNK // 2]), 1)
    # ...and the write that completes it waits for the first store (one at a time).
    completing = asyncio.create_task(sink.write(data[1][CHUNK // 2 :]))
    await asyncio.sleep(0.01)
    assert not completing.done() and len(blobs.started) == 1
    blobs.gates[0].set()
    await completing
    await started(blobs, 2)
    await sink.write(b"tail")
    closing = asyncio.create_task(sink.close())
    blobs.gates[1].set()
    await started(blobs, 3)
    await asyncio.sleep(0.01)
    assert not closing.done()  # the tail is not durable yet
    blobs.gates[2].set()
    await closing
    assert blobs.started == [data[0], data[1], b"tail"]
    assert [m["sha256"] for m in sink.manifest] == [
        hashlib.sha256(d).hexdigest() for d in blobs.started
    ]


async def test_a_failed_store_is_raised_by_the_next_write_or_close() -> None:
    blobs = GatedBlobs()
    blobs.fail_at = 0
    sink = ArchiveSink(blobs, CHUNK)  # type: ignore[arg-type]
    await sink.write(b"a" * CHUNK)
    await started(blobs, 1)
    blobs.gates[0].set()
    with pytest.raises(OSError, match="disk full"):
        await sink.write(b"b" * CHUNK)
    closing = ArchiveSink(blobs, CHUNK)  # type: ignore[arg-type]
    blobs.fail_at = 1
    await closing.write(b"c" * 10)
    done = asyncio.create_task(closing.close())
    await started(blobs, 2)
    blobs.gates[1].set()
    with pytest.raises(OSError, match="disk full"):
        await done


async def test_bytes_come_back_whole_from_a_real_store(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    sink = ArchiveSink(blobs, CHUNK)
    data = bytes(range(256)) * (CHUNK * 11 // 2 // 256)  # 5.5 chunks
    sizes = [1, 7000, CHUNK, 3, CHUNK * 2 + 5]
    pos = 0
    while pos < len(data):
        n = sizes[pos % len(sizes)]
        await sink.write(data[pos : pos + n])
        pos += n
    await sink.close()
    assert sink.sha256 == hashlib.sha256(data).hexdigest() and sink.size == len(data)
    assert [m["size"] for m in sink.manifest] == [CHUNK] * 5 + [CHUNK // 2]
    back = b""
    for m in sink.manifest:
        async for piece in blobs.open_range(str(m["sha256"]), 0, None):
            back += piece
    assert back == data
