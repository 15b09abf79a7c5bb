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


class _RecordingHash:
    """An `also_hash` that keeps what it is fed and can be made to wait."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.inner = hashlib.sha256()
        self.gate = gate
        self.waited_out: list[bool] = []

    def update(self, data: bytes) -> None:
        if self.gate is not None:
            self.waited_out.append(self.gate.wait(timeout=5))
        self.inner.update(data)


async def test_vectored_writes_hash_both_digests_over_every_batch() -> None:
    writes: list[list[bytes]] = []
    also = _RecordingHash()
    batcher = HashingBatcher(
        lambda b: writes.append([b]), buffer=10, also_hash=also, writev=writes.append
    )
    pieces = [b"abcd", b"efgh", b"ijkl", b"m", b"nopqrstuvwxyz", b"12"]
    await batcher.absorb(feed(pieces))
    body = b"".join(pieces)
    # The pieces are written as they came (one list per batch, never joined), in order.
    assert writes == [[b"abcd", b"efgh", b"ijkl"], [b"m", b"nopqrstuvwxyz"], [b"12"]]
    assert batcher.hasher.hexdigest() == hashlib.sha256(body).hexdigest()
    assert also.inner.hexdigest() == hashlib.sha256(body).hexdigest()


async def test_the_second_hash_runs_beside_the_write() -> None:
    """The running digest has a thread of its own: its update can wait for the write of the
    same batch. In one thread (hash, second hash, write, one after the other) it would wait
    in vain and time out."""
    written = threading.Event()
    also = _RecordingHash(gate=written)

    def writev(batch: list[bytes]) -> None:
        written.set()

    batcher = HashingBatcher(lambda b: None, buffer=4, also_hash=also, writev=writev)
    await batcher.absorb(feed([b"aaaa"]))
    assert also.waited_out == [True]
    assert also.inner.hexdigest() == hashlib.sha256(b"aaaa").hexdigest()


async def test_the_next_batch_waits_for_every_lane() -> None:
    """Batch N+1 reaches no lane before every lane finished batch N: a slow second hash
    holds the next write back, so a hash state and the file offset stay in order."""
    release = threading.Event()
    order: list[str] = []

    class SlowHash:
        def update(self, data: bytes) -> None:
            if data == b"aaaa":
                release.wait(timeout=5)
            order.append(f"hash {data.decode()}")

    def writev(batch: list[bytes]) -> None:
        order.append(f"write {b''.join(batch).decode()}")
        if batch == [b"aaaa"]:
            release.set()

    batcher = HashingBatcher(lambda b: None, buffer=4, also_hash=SlowHash(), writev=writev)
    await batcher.absorb(feed([b"aaaa", b"bbbb"]))
    assert order.index("hash aaaa") < order.index("write bbbb")
    assert order.index("write aaaa") < order.index("write bbbb")
