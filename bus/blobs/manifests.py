"""A file is an ordered manifest of chunks (sha256, size): read it back, or hash it.

Written once against the BlobStore port, so serving and completion work on every store.
A store that can hash a whole chunk without handing its bytes to the event loop (the
local store: one thread hop per chunk instead of one per piece) says so by offering
`hash_into` (the `HashesInPlace` protocol); a store of tiers, which knows per blob where
it is, offers `hash_chunk` (`HashesChunks`, bus/blobs/inline.py). Capabilities, not
backend checks.

Hashing a big file is long (about 0.7 s per GiB at sha256's speed here) and sometimes not
needed by the time it ends: the handlers hash a tus upload that reached its length in
case the API died before completing it, while the API completes it milliseconds later.
`hash_manifest` asks a `keep_going` check between chunks (every `CHECK_EVERY_BYTES`), so
such a hash stops after a few chunks instead of competing for the CPU with the next
upload (issue 13).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from bus.blobs.errors import BlobCorrupt, BlobNotFound
from domain.ports import BlobStore

# How many bytes hash_manifest hashes between two `keep_going` checks: a few 8 MiB tus
# pieces, about 25 ms of hashing here, for one indexed lookup.
CHECK_EVERY_BYTES = 32 * 1024 * 1024


class HashAbandoned(Exception):
    """`keep_going` said the digest is no longer wanted; nothing is returned."""


@runtime_checkable
class HashesInPlace(Protocol):
    def hash_into(self, hasher: Any, sha256: str, size: int) -> None:
        """Feed exactly `size` bytes of one blob to `hasher` (blocking: run it in a thread).

        BlobNotFound if missing, ValueError if its size differs."""
        ...


@runtime_checkable
class HashesChunks(Protocol):
    async def hash_chunk(self, hasher: Any, sha256: str, size: int) -> None:
        """Feed exactly `size` bytes of one blob to `hasher` (a store of tiers, which
        knows best how to read each: bus/blobs/inline.py).

        BlobNotFound if missing, ValueError if its size differs."""
        ...


def manifest_offsets(manifest: Sequence[tuple[str, int]]) -> list[int]:
    """Where each chunk starts in the file, plus the file's size at the end."""
    return [0, *itertools.accumulate(size for _, size in manifest)]


async def read_manifest(
    store: BlobStore,
    manifest: Sequence[tuple[str, int]],
    start: int = 0,
    end: int | None = None,
    *,
    offsets: Sequence[int] | None = None,
) -> AsyncIterator[bytes]:
    """Stream bytes [start, end) of the file made of the ordered chunks (sha256, size).

    Only the chunks overlapping the range are opened, and only their overlapping bytes
    read: the first one is found by bisection over `offsets` (`manifest_offsets`; pass it
    when reading several ranges of one file). A range past the end of the file is rejected
    with ValueError (see bus/blobs/local.py check_range); so is start > end. A stored
    chunk shorter than its manifest size raises BlobCorrupt, as a rotten one does."""
    if offsets is None:
        offsets = manifest_offsets(manifest)
    total = offsets[-1]
    if end is None:
        end = total
    if not 0 <= start <= end <= total:
        raise ValueError(f"range [{start}, {end}) outside a file of {total} bytes")
    i = max(0, bisect.bisect_right(offsets, start) - 1)
    while i < len(manifest) and offsets[i] < end:
        sha256, size = manifest[i]
        chunk_start = offsets[i]
        lo = max(start, chunk_start) - chunk_start
        hi = min(end, chunk_start + size) - chunk_start
        if hi > lo:  # also skips empty chunks: nothing to open for them
            try:
                async for piece in store.open_range(sha256, lo, hi - lo):
                    yield piece
            except ValueError as e:
                # The range lies within the chunk's size by the manifest, so the stored
                # blob is shorter than the bytes it was stored with: truncated, corrupt.
                raise BlobCorrupt(sha256, "", f"blob {sha256} truncated: {e}") from e
        i += 1


async def hash_manifest(
    store: BlobStore,
    manifest: Sequence[tuple[str, int]],
    *,
    keep_going: Callable[[], Awaitable[bool]] | None = None,
    check_every: int | None = None,
) -> str:
    """The sha256 hex of the concatenated chunks, streamed and hashed off the loop.

    Each chunk must have exactly its manifest size (ValueError otherwise); a missing chunk
    raises BlobNotFound. With `keep_going`, it is awaited before a chunk once `check_every`
    bytes (default CHECK_EVERY_BYTES) were hashed since the last check (never before the
    first chunk): False raises HashAbandoned."""
    every = CHECK_EVERY_BYTES if check_every is None else check_every
    hasher = hashlib.sha256()
    since_check = 0
    for sha256, size in manifest:
        if keep_going is not None and since_check >= every:
            since_check = 0
            if not await keep_going():
                raise HashAbandoned
        since_check += size
        await hash_blob(store, hasher, sha256, size)
    return hasher.hexdigest()


async def hash_blob(store: BlobStore, hasher: Any, sha256: str, size: int) -> None:
    """Feed exactly `size` bytes of one blob to `hasher`, the best way `store` offers.

    BlobNotFound if it is missing, ValueError if its size differs."""
    if isinstance(store, HashesChunks):
        await store.hash_chunk(hasher, sha256, size)
        return
    if isinstance(store, HashesInPlace):
        # The chunk wholly in one thread hop, into the one hash state.
        await asyncio.to_thread(store.hash_into, hasher, sha256, size)
        return
    # A chunk longer than its manifest says would go unnoticed by the range read.
    actual = await store.size(sha256)
    if actual is None:
        raise BlobNotFound(sha256)
    if actual != size:
        raise ValueError(f"blob {sha256} has {actual} bytes, its manifest says {size}")
    async for piece in store.open_range(sha256, 0, size):
        await asyncio.to_thread(hasher.update, piece)
