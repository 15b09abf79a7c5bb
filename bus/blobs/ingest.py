"""Ingest: one streamed body of any length into durable content-addressed pieces.

For writers that have the whole content as one stream (an object PUT): the body is cut into
pieces as it arrives (sizes from `piece_at(offset)`, so a huge body keeps a bounded
manifest), each piece is streamed into the blob store (never a whole piece in memory, let
alone the body), and the whole body's sha256 is taken on the way. When `ingest` returns,
every piece is durable; if it raises (the client went away, too large, store failure),
nothing refers to what was stored, and the collector's grace removes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

from bus.blobs.errors import BlobTooLarge
from domain.ports import BlobStore


@dataclass(frozen=True)
class Ingested:
    sha256: str
    size: int
    manifest: list[tuple[str, int]]  # (sha256, size) of each piece, in order
    head: bytes = b""  # the first `keep_head` bytes (to sniff a type without reading back)


class _Body:
    """The source, handed out piece by piece; hashes and counts what passes through."""

    def __init__(self, source: AsyncIterable[bytes], max_bytes: int, keep_head: int) -> None:
        self._it = source.__aiter__()
        self._pending = b""
        self._ended = False
        self._max = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self._keep = keep_head
        self.head = b""

    async def more(self) -> bool:
        """Is there another byte? (Reads ahead; an empty body stores no piece at all.)"""
        while not self._pending and not self._ended:
            try:
                self._pending = bytes(await anext(self._it))
            except StopAsyncIteration:
                self._ended = True
        return bool(self._pending)

    async def piece(self, limit: int) -> AsyncIterator[bytes]:
        """At most `limit` bytes, as they arrive."""
        while limit > 0 and await self.more():
            data = self._pending[:limit]
            self._pending = self._pending[limit:]
            self.size += len(data)
            if self.size > self._max:
                raise BlobTooLarge(self._max)
            self.hasher.update(data)
            if len(self.head) < self._keep:
                self.head += data[: self._keep - len(self.head)]
            limit -= len(data)
            yield data


async def ingest(
    blobs: BlobStore,
    source: AsyncIterable[bytes],
    *,
    piece_at: Callable[[int], int],
    max_bytes: int,
    keep_head: int = 0,
) -> Ingested:
    """Store `source` as pieces; return its digest, size and manifest once all is durable
    (and its first `keep_head` bytes).

    Raises BlobTooLarge past `max_bytes`; whatever the source raises (a cut-off body)
    passes through."""
    body = _Body(source, max_bytes, keep_head)
    manifest: list[tuple[str, int]] = []
    # One piece at a time, in order: the whole-body hash sees the bytes in order.
    while await body.more():
        sha256, size = await blobs.put_stream(body.piece(piece_at(body.size)))
        manifest.append((sha256, size))
    return Ingested(body.hasher.hexdigest(), body.size, manifest, body.head)
