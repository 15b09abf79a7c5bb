"""A streamed archive becomes a file: cut into chunks, each stored through the blob store.

The archive is produced as a stream of byte pieces; they are gathered into one chunk of
at most CAIRN_DEFAULT_CHUNK_BYTES and each full chunk is stored with `BlobStore.put_stream`
(durable when it returns), hashed on the way for the file's sha256. One chunk is stored
while the next one fills (the store's hash, write and fsync overlap the archiving), so at
most two chunks are held; the manifest keeps the chunks' order, as each store waits for
the one before, and `close` returns once every chunk is durable. Chunks are
content-addressed: a restarted archive stores the same bytes again under the same names,
and chunks of an abandoned one (cancelled, crashed) are unreferenced and collected by the
garbage collector.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from domain.ports import BlobStore


class ArchiveSink:
    def __init__(self, blobs: BlobStore, chunk_size: int) -> None:
        self.blobs = blobs
        self.chunk_size = max(chunk_size, 64 * 1024)
        self.manifest: list[dict[str, object]] = []
        self.size = 0
        self._sha = hashlib.sha256()
        self._buffer = bytearray()
        self._chunks = 0  # chunks handed to the store
        self._storing: asyncio.Task[None] | None = None

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def _put(self, data: bytes) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        sha, size = await self.blobs.put_stream(one())
        self.manifest.append({"sha256": sha, "size": size})

    async def _settled(self) -> None:
        """Wait for the chunk being stored (its failure is raised here)."""
        if self._storing is not None:
            storing, self._storing = self._storing, None
            try:
                await storing
            except asyncio.CancelledError:
                storing.cancel()  # we are cancelled: so is the store we waited for
                raise

    async def _store(self, data: bytes) -> None:
        await self._settled()  # one store at a time keeps the manifest in order
        self._chunks += 1
        self._storing = asyncio.create_task(self._put(data))

    async def write(self, piece: bytes) -> None:
        self._sha.update(piece)
        self.size += len(piece)
        self._buffer += piece
        while len(self._buffer) >= self.chunk_size:
            chunk = bytes(self._buffer[: self.chunk_size])
            del self._buffer[: self.chunk_size]
            await self._store(chunk)

    async def close(self) -> None:
        """Store what is left (an empty file is one empty chunk); every chunk is durable
        when this returns."""
        if self._buffer or not self._chunks:
            await self._store(bytes(self._buffer))
            self._buffer.clear()
        await self._settled()

    def abandon(self) -> None:
        """Stop a store in flight (the run stopped): its chunk is left unreferenced."""
        if self._storing is not None:
            self._storing.cancel()
            self._storing = None

    async def drain(self, stream: AsyncIterable[bytes]) -> None:
        try:
            async for piece in stream:
                await self.write(piece)
            await self.close()
        except BaseException:
            self.abandon()
            raise
