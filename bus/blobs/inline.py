"""Small blobs kept in PostgreSQL, in front of any blob store (`CAIRN_BLOB_INLINE_BYTES`).

A blob stored as a file of its own costs, whatever its size, an inode, a temp file, a
rename and two fsyncs (file and directory); on S3, a PUT. For a 4 KiB upload that is most
of the work: measured on the bench VM (issue 13), storing nothing at all made Cairn's 4 KiB
tus uploads 1.6x faster and cut the API's CPU per file from 2.3-2.8 ms to 0.9-1.0 ms, most
of it the kernel allocating inodes. So a stream that ends within `max_bytes` is one row of
`blobs.inline` (migrations/0016_inline_blobs.sql) instead, committed before `put_stream`
returns: durable by PostgreSQL's WAL. The puts that arrive together share one INSERT and
its commit (bus/blobs/inline_rows.py). Larger
streams go to the wrapped store unchanged. MinIO does the same with small objects, which
it keeps inside their metadata file.

Everything else holds a domain.ports.BlobStore, so nothing upstream knows which tier a
blob is in: reads, sizes and deletes look in the table first (one primary-key lookup) and
then in the wrapped store, where the blobs stored before this tier existed still are; the
garbage collector lists both. The wrapped store's own capabilities stay reachable:
`hash_chunk` hashes a blob in place whichever tier holds it (bus/blobs/manifests.py), and
a presigning store (S3) is wrapped by `InlinePresigningBlobStore`, which presigns only
what is not inline (an inline blob is never in the bucket).

Dedup and the collector race like the file store's (bus/blobs/local.py `_collect`): a put
of bytes already stored refreshes `stored_at`, and the collector deletes only rows still
stored before its cutoff, in one statement, so a put that lands between its listing and its
delete keeps the blob.

`stored_at` is the database's clock, set by the INSERT itself (bus/blobs/inline_rows.py),
and ages are judged on it, as the S3 store judges them on S3's (`_to_our_clock` there).
It was the writer's clock: the writers and the collector run on different hosts, and a
writer whose clock ran behind by more than the grace made the row it had just put look
old, so the collector could delete it before its StoreChunk named it. Now the listing
reports each time moved onto this process's clock (`clock`) by the skew measured in the
same query, and the DELETE judges the age asked for against the database's own now.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from bus.blobs.errors import BlobNotFound, BlobStoreFull, BlobStoreUnavailable, BlobTooLarge
from bus.blobs.inline_rows import InlineRowWriter
from bus.blobs.local import chained, check_range, is_sha256
from bus.blobs.manifests import hash_blob
from bus.config import metrics
from bus.store.db import create_pool
from domain.ports import BlobStore

# Rows per page of the collector's listing: memory stays bounded whatever the table holds.
LIST_PAGE = 1000
# PostgreSQL down, restarting or refusing connections: for this tier that is the blob store
# being unavailable (503 with Retry-After, which clients retry), not a bug (a bare 500).
_DB_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@contextlib.asynccontextmanager
async def _db_faults() -> AsyncIterator[None]:
    """Report the database's faults as the blob store's (bus/blobs/errors.py)."""
    try:
        yield
    except asyncpg.DiskFullError as e:
        raise BlobStoreFull(f"PostgreSQL (small blobs) is out of disk space: {e}", 30) from e
    except _DB_DOWN as e:
        raise BlobStoreUnavailable(f"PostgreSQL (small blobs) unavailable: {e!r}") from e


class InlineBlobStore:
    """Blobs of at most `max_bytes` in PostgreSQL, the rest in `inner`. A BlobStore.

    The pool is its own, opened on first use (the stores are built before the event loop
    runs) and small: the puts' rows go in batches, one statement at a time
    (bus/blobs/inline_rows.py)."""

    def __init__(
        self, inner: BlobStore, database_url: str, *, max_bytes: int, pool_size: int = 8
    ) -> None:
        self.inner = inner
        self.max_bytes = max_bytes
        self._url = database_url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._rows = InlineRowWriter(self._db)
        # This process's clock, which the times it reports and takes are on (as a cutoff
        # is): moved to and from the database's (a seam: tests set it).
        self.clock: Callable[[], float] = time.time

    async def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            # One pool per store, however many first uses race for it.
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await create_pool(self._url, min_size=1, max_size=self._pool_size)
        return self._pool

    # -- writing -------------------------------------------------------------------

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        also_hash: Any = None,
    ) -> tuple[str, int]:
        """Store the stream; return (sha256 hex, size) once it is durable.

        Up to `self.max_bytes` is gathered; a stream that ends there is one committed row,
        anything longer goes to the wrapped store, the gathered head first. Nothing is kept
        if it raises: the row is written in one statement, after the last byte."""
        source = aiter(chunks)
        head: list[bytes] = []
        size = 0
        while size <= self.max_bytes:
            try:
                piece = await anext(source)
            except StopAsyncIteration:
                return await self._put_row(head, size, also_hash)
            if piece:
                head.append(piece)
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
        return await self.inner.put_stream(
            chained(head, source), max_bytes=max_bytes, also_hash=also_hash
        )

    async def _put_row(self, pieces: list[bytes], size: int, also_hash: Any) -> tuple[str, int]:
        data = b"".join(pieces)
        # At most max_bytes (64 KiB by default): hashing it here costs less than a hop.
        digest = hashlib.sha256(data).hexdigest()
        if also_hash is not None:
            also_hash.update(data)
        # Committed with the other puts that arrive meanwhile (bus/blobs/inline_rows.py).
        async with _db_faults():
            await self._rows.put(digest, size, data)
        metrics.BLOB_WRITTEN_BYTES.inc(size)
        return digest, size

    # -- reading -------------------------------------------------------------------

    async def _row_size(self, sha256: str) -> int | None:
        async with _db_faults():
            pool = await self._db()
            size: int | None = await pool.fetchval(
                "SELECT size FROM blobs.inline WHERE sha256 = $1", sha256
            )
        return size

    async def _row_data(self, sha256: str) -> bytes | None:
        async with _db_faults():
            pool = await self._db()
            data: bytes | None = await pool.fetchval(
                "SELECT data FROM blobs.inline WHERE sha256 = $1", sha256
            )
        return data

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    async def size(self, sha256: str) -> int | None:
        if not is_sha256(sha256):
            return None
        inline = await self._row_size(sha256)
        if inline is not None:
            return inline
        return await self.inner.size(sha256)

    async def open_range(
        self, sha256: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Like the wrapped store's: lazy, BlobNotFound / ValueError on first iteration."""
        if not is_sha256(sha256):
            raise BlobNotFound(sha256)
        if length is not None and offset + length > self.max_bytes:
            # A range reaching past the tier's size is in a bigger blob: the wrapped store
            # first, so ranged reads of big files cost no lookup; the table only if it is
            # not there (a row from before the setting was lowered).
            pieces = self.inner.open_range(sha256, offset, length)
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                return
            except BlobNotFound:
                pass
            else:
                yield first
                async for piece in pieces:
                    yield piece
                return
        data = await self._row_data(sha256)
        if data is None:
            async for piece in self.inner.open_range(sha256, offset, length):
                yield piece
            return
        n = check_range(sha256, len(data), offset, length)
        if n:
            metrics.BLOB_READ_BYTES.inc(n)
            yield data[offset : offset + n]

    async def hash_chunk(self, hasher: Any, sha256: str, size: int) -> None:
        """Feed exactly `size` bytes of one blob to `hasher`, whichever tier holds it.

        BlobNotFound if missing, ValueError if its size differs (bus/blobs/manifests.py)."""
        if size > self.max_bytes:
            # Bigger than the tier's size: in the wrapped store, unless the setting was
            # lowered since (then the table holds it).
            try:
                await hash_blob(self.inner, hasher, sha256, size)
                return
            except BlobNotFound:
                data = await self._row_data(sha256)
                if data is None:
                    raise
        else:
            data = await self._row_data(sha256) if is_sha256(sha256) else None
            if data is None:
                await hash_blob(self.inner, hasher, sha256, size)
                return
        if len(data) != size:
            raise ValueError(f"blob {sha256} has {len(data)} bytes, its manifest says {size}")
        hasher.update(data)

    # -- deleting and listing ------------------------------------------------------

    async def delete(self, sha256: str) -> None:
        if not is_sha256(sha256):
            return
        pool = await self._db()
        await pool.execute("DELETE FROM blobs.inline WHERE sha256 = $1", sha256)
        await self.inner.delete(sha256)

    async def delete_many(self, shas: Sequence[str], *, stored_before: float) -> dict[str, int]:
        """Delete those of `shas` stored before `stored_before` (on `clock`) from both tiers.

        The row's age is judged by the DELETE itself, so a put refreshing `stored_at`
        concurrently either commits first (the row stays) or after (it stores it anew),
        and on the database's clock: a row goes only if older, by the database's now, than
        `stored_before` is by ours. Our now is read just before the statement is sent: the
        age asked is off by at most its way to the server (milliseconds), and the
        collector's cutoff is already older than its grace by the time its listing and
        reference checks took."""
        wanted = [s for s in shas if is_sha256(s)]
        if not wanted:
            return {}
        pool = await self._db()
        rows = await pool.fetch(
            "DELETE FROM blobs.inline WHERE sha256 = ANY($1::text[])"
            " AND stored_at < extract(epoch FROM clock_timestamp()) - $2::float8"
            " RETURNING sha256, size",
            wanted,
            self.clock() - stored_before,
        )
        freed = {r["sha256"]: r["size"] for r in rows}
        freed.update(await self.inner.delete_many(wanted, stored_before=stored_before))
        return freed

    async def iter_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """The rows, a page at a time in digest order, then the wrapped store's blobs.

        A row's `stored_at` (the database's clock) is moved onto `clock` by the skew
        measured with its page: our now when the page arrived minus the database's when
        it was read, so the round trip can only make a row look younger."""
        pool = await self._db()
        after = ""
        while True:
            rows = await pool.fetch(
                "SELECT sha256, size, stored_at,"
                " extract(epoch FROM clock_timestamp())::float8 AS db_now"
                " FROM blobs.inline WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
                after,
                LIST_PAGE,
            )
            ours = self.clock()
            for r in rows:
                yield r["sha256"], r["size"], r["stored_at"] + (ours - r["db_now"])
            if len(rows) < LIST_PAGE:
                break
            after = rows[-1]["sha256"]
        async for entry in self.inner.iter_blobs():
            yield entry

    async def sweep(self, older_than: float = 24 * 3600) -> int:
        """A row is written in one statement: only the wrapped store can have leftovers."""
        return await self.inner.sweep(older_than)

    async def ping(self) -> None:
        await self.inner.ping()
        async with _db_faults():
            pool = await self._db()
            await pool.fetchval("SELECT 1 FROM blobs.inline LIMIT 1")

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()


class InlinePresigningBlobStore(InlineBlobStore):
    """An inline tier in front of a store that presigns (S3): see the module docstring."""

    async def presigned_get(
        self,
        sha256: str,
        *,
        expires: int,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str | None:
        if await self._row_size(sha256) is not None:
            return None  # not in the bucket: served by Cairn
        presigned: str = await self.inner.presigned_get(  # type: ignore[attr-defined]
            sha256,
            expires=expires,
            content_type=content_type,
            content_disposition=content_disposition,
        )
        return presigned
