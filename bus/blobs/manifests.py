"""A file is an ordered manifest of chunks (sha256, size): read it back, or hash it.

Written once against the BlobStore port, so serving and completion work on every store.
A store that can hash a whole chunk without handing its bytes to the event loop (the
local store: one thread hop per chunk instead of one per piece) says so by offering
`hash_into` (the `HashesInPlace` protocol); that is a capability, not a backend check.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

from bus.blobs.errors import BlobNotFound
from domain.ports import BlobStore


@runtime_checkable
class HashesInPlace(Protocol):
    def hash_into(self, hasher: Any, sha256: str, size: int) -> None:
        """Feed exactly `size` bytes of one blob to `hasher` (blocking: run it in a thread).

        BlobNotFound if missing, ValueError if its size differs."""
        ...


async def read_manifest(
    store: BlobStore, manifest: Sequence[tuple[str, int]], start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """Stream bytes [start, end) of the file made of the ordered chunks (sha256, size).

    Chunks wholly before `start` are skipped without being opened. A range past the end of
    the file is rejected with ValueError (see bus/blobs/local.py _check_range); so is
    start > end."""
    total = sum(size for _, size in manifest)
    if end is None:
        end = total
    if not 0 <= start <= end <= total:
        raise ValueError(f"range [{start}, {end}) outside a file of {total} bytes")
    chunk_start = 0
    for sha256, size in manifest:
        chunk_end = chunk_start + size
        if chunk_start >= end:
            break
        lo = max(start, chunk_start) - chunk_start
        hi = min(end, chunk_end) - chunk_start
        if hi > lo:  # also skips empty chunks: nothing to open for them
            async for piece in store.open_range(sha256, lo, hi - lo):
                yield piece
        chunk_start = chunk_end


async def hash_manifest(store: BlobStore, manifest: Sequence[tuple[str, int]]) -> str:
    """The sha256 hex of the concatenated chunks, streamed and hashed off the loop.

    Each chunk must have exactly its manifest size (ValueError otherwise); a missing chunk
    raises BlobNotFound."""
    hasher = hashlib.sha256()
    if isinstance(store, HashesInPlace):
        # Chunks go one after another (one hash state), each wholly in one thread hop.
        for sha256, size in manifest:
            await asyncio.to_thread(store.hash_into, hasher, sha256, size)
        return hasher.hexdigest()
    for sha256, size in manifest:
        # A chunk longer than its manifest says would go unnoticed by the range read.
        actual = await store.size(sha256)
        if actual is None:
            raise BlobNotFound(sha256)
        if actual != size:
            raise ValueError(f"blob {sha256} has {actual} bytes, its manifest says {size}")
        async for piece in store.open_range(sha256, 0, size):
            await asyncio.to_thread(hasher.update, piece)
    return hasher.hexdigest()
