"""Hash-and-batch writing: the one loop every blob store runs over an incoming stream.

Each store's `put_stream` takes an upload body (pieces of typically 16-64 KiB), hashes it,
writes it somewhere durable-to-be (the local store's temp file, the S3 store's spool file)
and enforces the size cap. Doing that per piece on the event loop would block it on the
hash and the write; doing it per piece in a thread would pay a thread hop (~50 us) per
piece. So pieces are gathered into batches of `buffer` bytes and each batch is handed to
the default thread pool while the loop gathers the next one. With `writev` a batch is
written with one vectored write, never joined: joining copies every byte into a fresh
buffer, and on this machine the page faults of that fresh memory cost about as much as
hashing it (issue 13).

Lanes: a batch goes to up to three thread calls that run side by side, the write, its
sha256, and `also_hash` (an upload's running digest, bus/blobs/local.py). All three
release the GIL, and sha256 costs about 4.8 ms per 8 MiB here, so one thread doing all of
it made a sequential upload wait for two hashes and a write after its last byte; side by
side it waits for the longest of them (a native 8 MiB chunk PUT's store step: 31-35 ms,
from 35-39 ms, issue 13). Only the write lane touches the file, so only it (`inflight`)
is what a cleanup must wait for.

Why exactly one write in flight, and why it is shielded:
- Ordering: the hash states and the file offset are sequential, so buffer N+1 may only be
  handed to a lane once that lane finished buffer N. Waiting for every lane's previous
  buffer before handing over the next keeps at most ~2 buffers in memory per put, too.
- Cancellation: a thread cannot be interrupted. Awaiting its future directly would, on a
  cancellation of the put, cancel the *future* (marking it done) while the thread still
  writes into the file descriptor. The store's cleanup, which waits for `inflight` before
  closing and removing the file, would then close (or unlink) under a running write, and a
  reused descriptor could receive stray bytes. So every wait goes through
  `asyncio.shield`: the cancellation reaches the put, the future stays an honest "the
  thread is done" signal, and `inflight` is left for the caller's cleanup to wait on.

`run_cleanup` is the other half of that contract: the cleanup itself runs in a task of its
own, waited for through a shield, so a second cancellation cannot stop it half-way.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from bus.blobs.errors import BlobTooLarge

# Cleanup tasks that outlive the coroutine that started them (see run_cleanup): held here
# so they are not garbage collected mid-flight.
_CLEANUPS: set[asyncio.Task[None]] = set()


class HashingBatcher:
    """Feed a stream, batched, to `write` in a thread, hashing it (sha256) on the way.

    `write(data)` must write all of `data`; it runs in the default thread pool, never two
    at a time, in stream order. After `absorb` returns, `hasher` holds the digest of every
    byte and `size` their count. If `absorb` raises (the source failing, BlobTooLarge past
    `max_bytes`, a failed write, a cancellation), `inflight` is the last write handed to a
    thread, possibly still running: the caller must wait for it before releasing whatever
    `write` writes to."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        *,
        buffer: int,
        max_bytes: int | None = None,
        also_hash: Any = None,
        writev: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self._write = write
        # Writes a batch's pieces in order, as they are (see the module docstring).
        self._writev = writev
        # Fed the same buffers, in a thread hop of its own (see `_hand_over`).
        self._also = also_hash
        self._buffer = buffer
        self._max = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.inflight: asyncio.Future[None] | None = None
        # The hash lanes' last batches (see the module docstring). They touch no file,
        # only hash states, so a cleanup need not wait for them.
        self._hash_inflight: asyncio.Future[None] | None = None
        self._also_inflight: asyncio.Future[None] | None = None

    async def absorb(self, chunks: AsyncIterator[bytes]) -> None:
        """Consume `chunks`; return once every byte is hashed and written."""
        batch: list[bytes] = []
        batched = 0
        async for piece in chunks:
            if not piece:
                continue
            self.size += len(piece)
            # Checked before buffering: nothing past the cap is ever written.
            if self._max is not None and self.size > self._max:
                raise BlobTooLarge(self._max)
            batch.append(piece)
            batched += len(piece)
            if batched >= self._buffer:
                await self._hand_over(batch)
                batch, batched = [], 0
        if batch:
            await self._hand_over(batch)
        for lane in (self.inflight, self._hash_inflight, self._also_inflight):
            if lane is not None:
                await asyncio.shield(lane)

    async def _hand_over(self, batch: list[bytes]) -> None:
        # Each lane takes its batches in order (the file offset, each hash state), so
        # batch N+1 goes to a lane only once that lane finished batch N. Shielded (see the
        # module docstring): a cancellation must not mark a thread's future done while the
        # thread still runs.
        for previous in (self.inflight, self._hash_inflight, self._also_inflight):
            if previous is not None:
                await asyncio.shield(previous)
        loop = asyncio.get_running_loop()
        self.inflight = loop.run_in_executor(None, self._work, batch)
        self._hash_inflight = loop.run_in_executor(None, self._hash_work, batch)
        if self._also is not None:
            self._also_inflight = loop.run_in_executor(None, self._also_work, batch)

    def _also_work(self, batch: list[bytes]) -> None:
        for piece in batch:
            self._also.update(piece)

    def _hash_work(self, batch: list[bytes]) -> None:
        for piece in batch:
            self.hasher.update(piece)

    def _work(self, batch: list[bytes]) -> None:
        # os.writev and os.write release the GIL; the hashes run beside them.
        if self._writev is not None:
            self._writev(batch)
            return
        # bytes.join releases the GIL for big joins too.
        self._write(batch[0] if len(batch) == 1 else b"".join(batch))


async def run_cleanup(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run a cleanup in a task of its own and wait for it through a shield.

    So a second cancellation of the caller cannot stop the cleanup half-way: the caller
    stops waiting, the task still finishes (and is held in _CLEANUPS until then)."""
    task = asyncio.get_running_loop().create_task(cleanup)
    _CLEANUPS.add(task)
    task.add_done_callback(_CLEANUPS.discard)
    await asyncio.shield(task)
