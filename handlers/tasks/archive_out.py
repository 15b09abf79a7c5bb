"""A streamed archive becomes a file: cut into chunks, each stored through the blob store.

The archive is produced as a stream of byte pieces; they are gathered into one chunk of
at most CAIRN_DEFAULT_CHUNK_BYTES (the bounded buffer: nothing bigger is ever held) and
each full chunk is stored with `BlobStore.put_stream` (durable when it returns), hashed on
the way for the file's sha256. Chunks are content-addressed: a restarted archive stores
the same bytes again under the same names, and chunks of an abandoned one (cancelled,
crashed) are unreferenced and collected by the garbage collector.
"""

from __future__ import annotations

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

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def _store(self, data: bytes) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        sha, size = await self.blobs.put_stream(one())
        self.manifest.append({"sha256": sha, "size": size})

    async def write(self, piece: bytes) -> None:
        self._sha.update(piece)
        self.size += len(piece)
        self._buffer += piece
        while len(self._buffer) >= self.chunk_size:
            chunk = bytes(self._buffer[: self.chunk_size])
            del self._buffer[: self.chunk_size]
            await self._store(chunk)

    async def close(self) -> None:
        if self._buffer or not self.manifest:
            await self._store(bytes(self._buffer))
            self._buffer.clear()

    async def drain(self, stream: AsyncIterable[bytes]) -> None:
        async for piece in stream:
            await self.write(piece)
        await self.close()
