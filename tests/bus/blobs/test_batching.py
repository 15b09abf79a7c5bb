"""The hash-and-batch loop both blob stores share (bus/blobs/batching.py), on its own.

The stores' behaviour (durability, cleanup on failure and cancellation) is covered by the
contract suite in test_blobstore_contract.py; these pin the helper's own promises."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator

import pytest

from bus.blobs.batching import HashingBatcher
from bus.blobs.errors import BlobTooLarge


async def feed(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


async def test_batches_in_order_and_hashes_every_byte() -> None:
    writes: list[bytes] = []
    batcher = HashingBatcher(writes.append, buffer=10)
    pieces = [b"abcd", b"", b"efgh", b"ijkl", b"m", b"nopqrstuvwxyz", b"12"]
    await batcher.absorb(feed(pieces))
    body = b"".join(pieces)
    assert b"".join(writes) == body
    # A buffer is handed over once it holds at least `buffer` bytes; the rest at the end.
    assert writes == [b"abcdefghijkl", b"mnopqrstuvwxyz", b"12"]
    assert batcher.size == len(body)
    assert batcher.hasher.hexdigest() == hashlib.sha256(body).hexdigest()
    assert batcher.inflight is not None and batcher.inflight.done()


async def test_empty_stream_writes_nothing() -> None:
    writes: list[bytes] = []
    batcher = HashingBatcher(writes.append, buffer=10)
    await batcher.absorb(feed([b"", b""]))
    assert writes == []
    assert batcher.size == 0
    assert batcher.inflight is None
    assert batcher.hasher.hexdigest() == hashlib.sha256(b"").hexdigest()


async def test_size_cap_raises_before_writing_past_it() -> None:
    writes: list[bytes] = []
    batcher = HashingBatcher(writes.append, buffer=4, max_bytes=10)
    with pytest.raises(BlobTooLarge):
        await batcher.absorb(feed([b"aaaa", b"bbbb", b"cccc"]))
    if batcher.inflight is not None:
        await batcher.inflight
    assert b"".join(writes) == b"aaaabbbb"


async def test_exactly_at_the_cap_is_fine() -> None:
    writes: list[bytes] = []
    batcher = HashingBatcher(writes.append, buffer=4, max_bytes=8)
    await batcher.absorb(feed([b"aaaa", b"bbbb"]))
    assert b"".join(writes) == b"aaaabbbb"


async def test_a_failed_write_surfaces() -> None:
    def write(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    batcher = HashingBatcher(write, buffer=4)
    with pytest.raises(OSError) as e:
        await batcher.absorb(feed([b"aaaa", b"bbbb"]))
    assert e.value.errno == 28


async def test_cancellation_leaves_the_running_write_to_the_caller() -> None:
    """Cancelled while a write runs in a thread, the write's future is not marked done: the
    caller's cleanup can wait for the thread before touching what it writes to."""
    started = threading.Event()
    release = threading.Event()
    writes: list[bytes] = []

    def write(data: bytes) -> None:
        started.set()
        release.wait()
        writes.append(data)

    batcher = HashingBatcher(write, buffer=4)
    # The first buffer goes to a thread (which blocks); handing over the second waits for
    # it: the task's first and only suspension, so it is there once the write started.
    task = asyncio.create_task(batcher.absorb(feed([b"aaaa", b"bbbb"])))
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, started.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert batcher.inflight is not None
        assert not batcher.inflight.done()
    finally:
        release.set()
    assert batcher.inflight is not None
    await batcher.inflight
    assert writes == [b"aaaa"]
