"""One contract, every blob store: what the upload and serving paths rely on.

Each implementation is one param of the `blobs` fixture, which also says how to look
inside it (the stored objects, the leftovers of failed puts), so that "dedup" and "nothing
partial is kept" are checked for real: "local" (files), "s3" (a bucket of the local S3
server, tests/s3server.py, looked into with a plain botocore client) and "inline" (the
small blobs as rows of the embedded PostgreSQL in front of the local store,
bus/blobs/inline.py).

Decision fixed here: a range past the end of a chunk (or of a manifest) is rejected with
ValueError, never clamped; clamping HTTP ranges is the API's job.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import botocore.session
import pytest
import pytest_asyncio

from bus.blobs import direct as direct_module
from bus.blobs import local as local_module
from bus.blobs.errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobStoreFull,
    BlobStoreUnavailable,
    BlobTooLarge,
)
from bus.blobs.factory import open_blob_store
from bus.blobs.inline import InlineBlobStore
from bus.blobs.local import LocalBlobStore
from bus.blobs.manifests import HashAbandoned, hash_manifest, read_manifest
from bus.blobs.s3 import S3BlobStore, S3Options
from bus.config.settings import Settings
from domain.ports import BlobStore
from tests.s3server import S3Server
from tests.system import cloned_database, ensure_template

MiB = 1024 * 1024


@dataclass
class Blobs:
    """A store under test plus two ways to look inside it."""

    store: BlobStore
    objects: Callable[[], list[str]]  # the digests of the blobs stored, as the backend sees them
    leftovers: Callable[[], list[str]]  # whatever a put in flight or a failed put leaves around
    # Replace a stored blob's bytes behind the store's back (bit rot, truncation).
    corrupt: Callable[[str, bytes], None] = lambda sha256, data: None


def _local(tmp_path: Path, *, direct_io: bool = True) -> Blobs:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root, direct_io=direct_io)

    def objects() -> list[str]:
        return sorted(p.name for p in (root / "chunks").rglob("*") if p.is_file())

    def leftovers() -> list[str]:
        return sorted(p.name for p in (root / "tmp").iterdir())

    def corrupt(sha256: str, data: bytes) -> None:
        store.path_of(sha256).write_bytes(data)

    return Blobs(store, objects, leftovers, corrupt)


def s3_peek(server: S3Server) -> Any:
    """A plain (sync) botocore client: how the tests look into the bucket."""
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1"
    )


def _s3(tmp_path: Path, server: S3Server) -> tuple[Blobs, S3BlobStore]:
    bucket = f"t{secrets.token_hex(6)}"
    server.create_bucket(bucket)
    spool = tmp_path / "spool"
    # Small ranged GETs, so a read of BIG spans several of them.
    store = S3BlobStore(
        S3Options(
            bucket=bucket,
            prefix="p/",
            endpoint=server.endpoint,
            spool_dir=spool,
            range_bytes=3 * MiB,
        )
    )
    peek = s3_peek(server)

    def keys() -> list[str]:
        pages = peek.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def objects() -> list[str]:
        return sorted(k.removeprefix("p/chunks/") for k in keys() if k.startswith("p/chunks/"))

    def leftovers() -> list[str]:
        stray = [k for k in keys() if not k.startswith("p/chunks/")]
        uploads = peek.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted([p.name for p in spool.iterdir()] + stray + [u["Key"] for u in uploads])

    def corrupt(sha256: str, data: bytes) -> None:
        peek.put_object(Bucket=bucket, Key=f"p/chunks/{sha256}", Body=data)

    return Blobs(store, objects, leftovers, corrupt), store


def inline_rows(db_url: str) -> list[str]:
    """The digests in `blobs.inline`, read from a thread of its own (a sync peek)."""

    async def query() -> list[str]:
        conn = await asyncpg.connect(db_url)
        try:
            return [r["sha256"] for r in await conn.fetch("SELECT sha256 FROM blobs.inline")]
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, query()).result()


def _inline(tmp_path: Path, db_url: str) -> tuple[Blobs, InlineBlobStore]:
    """The local store behind the inline tier at its default size: small blobs are rows."""
    files = _local(tmp_path)
    store = InlineBlobStore(files.store, db_url, max_bytes=INLINE)

    def objects() -> list[str]:
        return sorted(files.objects() + inline_rows(db_url))

    return Blobs(store, objects, files.leftovers, files.corrupt), store


INLINE = Settings().blob_inline_bytes


@pytest_asyncio.fixture(params=["local", "s3", "inline"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Blobs]:
    if request.param == "local":
        yield _local(tmp_path)
        return
    if request.param == "inline":
        # Cloned here: the async `db_url` fixture cannot be requested from inside this one.
        pg = request.getfixturevalue("pg_server")
        await ensure_template(pg.url)
        async with cloned_database(pg.url) as url:
            b, tiered = _inline(tmp_path, url)
            try:
                yield b
            finally:
                await tiered.close()
        return
    b, store = _s3(tmp_path, request.getfixturevalue("s3_server"))
    yield b
    await store.close()


class Recording:
    """A BlobStore that only forwards, recording the ranges opened.

    Also makes `hash_manifest` take its generic (non-local) path."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.opened: list[tuple[str, int, int | None]] = []

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> tuple[str, int]:
        return await self.inner.put_stream(chunks, max_bytes=max_bytes)

    async def exists(self, sha256: str) -> bool:
        return await self.inner.exists(sha256)

    async def size(self, sha256: str) -> int | None:
        return await self.inner.size(sha256)

    def open_range(
        self, sha256: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        self.opened.append((sha256, offset, length))
        return self.inner.open_range(sha256, offset, length)

    async def delete(self, sha256: str) -> None:
        await self.inner.delete(sha256)

    def iter_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        return self.inner.iter_blobs()

    async def delete_many(self, shas: Sequence[str], *, stored_before: float) -> dict[str, int]:
        return await self.inner.delete_many(shas, stored_before=stored_before)

    async def sweep(self, older_than: float = 24 * 3600) -> int:
        return await self.inner.sweep(older_than)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def feed(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut `data` into pieces of the given sizes, cycling them; the last one takes the rest."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in it])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Big enough to span several write buffers and read pieces, with odd piece sizes.
BIG = os.urandom(9 * MiB + 12345)


# -- put / read -------------------------------------------------------------------------


async def test_round_trip_returns_sha_and_size(blobs: Blobs) -> None:
    s = blobs.store
    digest, size = await s.put_stream(feed(split(BIG, [1, 7, 65536, 3 * MiB + 1, 0])))
    assert (digest, size) == (sha(BIG), len(BIG))
    assert await s.exists(digest)
    assert await s.size(digest) == len(BIG)
    assert await read_all(s.open_range(digest)) == BIG
    assert blobs.objects() == [digest]
    assert blobs.leftovers() == []


async def test_empty_blob(blobs: Blobs) -> None:
    s = blobs.store
    assert await s.put_stream(feed([])) == (sha(b""), 0)
    # Empty pieces are no content either.
    assert await s.put_stream(feed([b"", b""])) == (sha(b""), 0)
    assert await s.exists(sha(b""))
    assert await s.size(sha(b"")) == 0
    assert [p async for p in s.open_range(sha(b""))] == []
    assert blobs.objects() == [sha(b"")]


@pytest.mark.parametrize("size", [300_000, len(BIG)], ids=["small", "big"])
async def test_a_whole_read_of_rotten_bytes_fails_before_its_end(blobs: Blobs, size: int) -> None:
    """Bit rot (same size, one byte flipped) is caught by a whole-blob read: BlobCorrupt
    before the last byte is handed out, so an answer made of it never completes. (Both
    sizes are past the inline tier: rows are PostgreSQL's to check.)"""
    data = BIG[:size]
    digest, _ = await blobs.store.put_stream(feed(split(data, [65536])))
    rotten = bytearray(data)
    rotten[size // 2] ^= 0x01
    blobs.corrupt(digest, bytes(rotten))
    got = bytearray()
    with pytest.raises(BlobCorrupt) as e:
        async for piece in blobs.store.open_range(digest, 0, size):
            got += piece
    assert e.value.sha256 == digest
    assert len(got) < size
    # A range of the blob is not the blob: it is served unverified, as S3 serves ranges.
    assert await read_all(blobs.store.open_range(digest, 0, 10)) == data[:10]


async def test_a_blob_changed_after_a_good_whole_read_is_checked_again(blobs: Blobs) -> None:
    """A store may remember a blob it read whole and found right (the local store does, by
    inode, mtime and size: hashing every download cost 40 % of its speed); its bytes
    changed since are checked again, not served as the good ones were."""
    data = BIG[:300_000]
    digest, size = await blobs.store.put_stream(feed([data]))
    assert await read_all(blobs.store.open_range(digest)) == data  # found right
    assert await read_all(blobs.store.open_range(digest)) == data  # and again
    rotten = bytearray(data)
    rotten[7] ^= 0x80
    blobs.corrupt(digest, bytes(rotten))
    with pytest.raises(BlobCorrupt):
        await read_all(blobs.store.open_range(digest, 0, size))


async def test_read_manifest_of_a_truncated_chunk_is_corrupt(blobs: Blobs) -> None:
    """A chunk shorter on the store than in its manifest is corrupt (BlobCorrupt, the
    API's 500 blob_corrupt), not a bad range (ValueError, a bare 500 internal_error)."""
    data = BIG[:300_000]
    digest, size = await blobs.store.put_stream(feed([data]))
    blobs.corrupt(digest, data[:1000])
    with pytest.raises(BlobCorrupt) as e:
        await read_all(read_manifest(blobs.store, [(digest, size)]))
    assert e.value.sha256 == digest
    with pytest.raises(BlobCorrupt):
        await read_all(read_manifest(blobs.store, [(digest, size)], 5000, 6000))


async def test_same_content_twice_is_stored_once(blobs: Blobs) -> None:
    s = blobs.store
    first = await s.put_stream(feed(split(BIG, [65536])))
    second = await s.put_stream(feed(split(BIG, [1000, 4 * MiB])))  # cut differently
    assert first == second == (sha(BIG), len(BIG))
    assert blobs.objects() == [sha(BIG)]
    assert blobs.leftovers() == []
    assert await read_all(s.open_range(sha(BIG))) == BIG


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 10),  # start
        (0, None),  # everything
        (5 * MiB + 3, 2 * MiB + 7),  # middle, across read pieces
        (len(BIG) - 10, 10),  # end, exact
        (len(BIG) - 10, None),  # end, open
        (len(BIG), 0),  # empty at the very end
        (len(BIG), None),
        (123, 0),  # empty in the middle
    ],
)
async def test_ranges(blobs: Blobs, offset: int, length: int | None) -> None:
    digest, _ = await blobs.store.put_stream(feed([BIG]))
    want = BIG[offset:] if length is None else BIG[offset : offset + length]
    pieces = [p async for p in blobs.store.open_range(digest, offset, length)]
    assert b"".join(pieces) == want
    assert all(pieces), "no empty pieces"


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (len(BIG) - 10, 11),  # one byte past the end: rejected, not clamped
        (0, len(BIG) + 1),
        (len(BIG) + 1, None),  # starts past the end
        (len(BIG) + 1, 0),
        (-1, None),
        (0, -1),
    ],
)
async def test_ranges_outside_the_blob_are_rejected(
    blobs: Blobs, offset: int, length: int | None
) -> None:
    digest, _ = await blobs.store.put_stream(feed([BIG]))
    with pytest.raises(ValueError):
        await read_all(blobs.store.open_range(digest, offset, length))


# -- failures keep nothing ------------------------------------------------------------


class Source:
    """An upload body that counts what was taken from it and can fail or stall midway."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.pieces = split(data, [piece])
        self.taken = 0
        self.stalled = asyncio.Event()

    async def then_raise(self, after: int, exc: BaseException) -> AsyncIterator[bytes]:
        for p in self.pieces[:after]:
            self.taken += 1
            yield p
        raise exc

    async def then_stall(self, after: int) -> AsyncIterator[bytes]:
        for p in self.pieces[:after]:
            self.taken += 1
            yield p
        self.stalled.set()
        await asyncio.Event().wait()  # a client that went silent: only cancellation ends it

    async def all(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            self.taken += 1
            yield p


async def test_max_bytes_exactly_is_accepted(blobs: Blobs) -> None:
    got = await blobs.store.put_stream(feed(split(BIG, [65536])), max_bytes=len(BIG))
    assert got == (sha(BIG), len(BIG))


async def test_max_bytes_exceeded_keeps_nothing_and_stops_reading(blobs: Blobs) -> None:
    limit = 6 * MiB + 1  # past at least one full write buffer, so a write was in flight
    src = Source(BIG)
    with pytest.raises(BlobTooLarge) as e:
        await blobs.store.put_stream(src.all(), max_bytes=limit)
    assert e.value.limit == limit
    # It stopped at the first piece that crossed the limit, not at the end of the body.
    assert src.taken == limit // (64 * 1024) + 1
    assert not await blobs.store.exists(sha(BIG))
    assert not await blobs.store.exists(sha(BIG[:limit]))
    assert blobs.objects() == []
    assert blobs.leftovers() == []
    # The store still works after a failed put.
    assert await blobs.store.put_stream(feed([b"x"])) == (sha(b"x"), 1)


async def test_source_failing_midway_propagates_and_keeps_nothing(blobs: Blobs) -> None:
    src = Source(BIG)
    boom = ConnectionResetError("client went away")
    with pytest.raises(ConnectionResetError) as e:
        await blobs.store.put_stream(src.then_raise(100, boom))  # ~6.25 MiB in
    assert e.value is boom
    assert src.taken == 100
    assert blobs.objects() == []
    assert blobs.leftovers() == []


async def test_source_failing_before_any_byte_keeps_nothing(blobs: Blobs) -> None:
    with pytest.raises(ConnectionResetError):
        await blobs.store.put_stream(Source(BIG).then_raise(0, ConnectionResetError()))
    assert blobs.objects() == []
    assert blobs.leftovers() == []


async def assert_intact(blobs: Blobs) -> None:
    """Every stored object is whole: its bytes hash to its name."""
    for name in blobs.objects():
        assert sha(await read_all(blobs.store.open_range(name))) == name


async def test_put_cancelled_while_writing_keeps_nothing_partial(blobs: Blobs) -> None:
    async def cancel_midway() -> AsyncIterator[bytes]:
        for i, p in enumerate(split(BIG, [64 * 1024])):
            if i == 70:  # past the first 4 MiB buffer: a write is, or was, in flight
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # raised at the put's next await, whichever it is
            yield p

    task = asyncio.create_task(blobs.store.put_stream(cancel_midway()))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blobs.leftovers() == []
    # Cancelled during its final commit, a put may leave the complete blob; never a part.
    assert set(blobs.objects()) <= {sha(BIG)}
    await assert_intact(blobs)


async def test_cancelled_put_keeps_nothing(blobs: Blobs) -> None:
    src = Source(BIG)
    task = asyncio.create_task(blobs.store.put_stream(src.then_stall(100)))
    await src.stalled.wait()
    assert blobs.leftovers() != []  # the put really was in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blobs.objects() == []
    assert blobs.leftovers() == []


# -- concurrency ------------------------------------------------------------------------


async def test_concurrent_puts_of_the_same_content(blobs: Blobs) -> None:
    data = BIG[: 5 * MiB + 99]
    results = await asyncio.gather(
        *(blobs.store.put_stream(feed(split(data, [65536 + i]))) for i in range(20))
    )
    assert set(results) == {(sha(data), len(data))}
    assert blobs.objects() == [sha(data)]
    assert blobs.leftovers() == []
    assert await read_all(blobs.store.open_range(sha(data))) == data


async def test_concurrent_puts_of_different_contents(blobs: Blobs) -> None:
    datas = [i.to_bytes(4, "big") + BIG[: MiB + i * 4099] for i in range(20)]
    results = await asyncio.gather(
        *(blobs.store.put_stream(feed(split(d, [65536]))) for d in datas)
    )
    assert results == [(sha(d), len(d)) for d in datas]
    assert blobs.objects() == sorted(sha(d) for d in datas)
    assert blobs.leftovers() == []
    for d in datas:
        assert await read_all(blobs.store.open_range(sha(d))) == d


# -- delete, missing, ping --------------------------------------------------------------


async def test_delete(blobs: Blobs) -> None:
    s = blobs.store
    keep, _ = await s.put_stream(feed([b"keep me"]))
    gone, _ = await s.put_stream(feed([b"delete me"]))
    await s.delete(gone)
    assert not await s.exists(gone)
    assert await s.size(gone) is None
    with pytest.raises(BlobNotFound):
        await read_all(s.open_range(gone))
    await s.delete(gone)  # deleting a missing blob is fine
    assert await s.exists(keep)
    assert blobs.objects() == [keep]


async def test_iter_blobs_lists_every_blob_with_size_and_mtime(blobs: Blobs) -> None:
    s = blobs.store
    listing = s.iter_blobs
    assert [b async for b in listing()] == []
    contents = [b"", b"one", b"two" * 1000, os.urandom(MiB + 5)]
    before = time.time()
    for c in contents:
        await s.put_stream(feed([c]))
    await s.put_stream(feed([b"one"]))  # the same bytes again: still one blob
    listed = sorted([b async for b in listing()])
    assert [(d, n) for d, n, _ in listed] == sorted((sha(c), len(c)) for c in contents)
    # The mtime is when the blob was (last) written: the collector's grace is judged on it.
    assert all(before - 2 <= m <= time.time() + 2 for _, _, m in listed)
    await s.delete(sha(b"one"))
    assert sha(b"one") not in {d async for d, _, _ in listing()}
    assert blobs.leftovers() == []


async def test_delete_many_deletes_only_what_was_stored_before(blobs: Blobs) -> None:
    s = blobs.store
    a, _ = await s.put_stream(feed([b"a"]))
    bb, _ = await s.put_stream(feed([b"bb"]))
    c, _ = await s.put_stream(feed([b"ccc"]))
    now = time.time()
    # Stored just now: not "before an hour ago", so nothing goes.
    assert await s.delete_many([a, bb], stored_before=now - 3600) == {}
    assert blobs.objects() == sorted([a, bb, c])
    got = await s.delete_many(
        [a, bb, sha(b"never stored"), "../../etc/passwd"], stored_before=now + 3600
    )
    assert got == {a: 1, bb: 2}
    assert blobs.objects() == [c]
    assert await s.delete_many([], stored_before=now + 3600) == {}
    assert blobs.leftovers() == []


async def test_sweep_keeps_blobs(blobs: Blobs) -> None:
    digest, _ = await blobs.store.put_stream(feed([b"stays"]))
    assert await blobs.store.sweep(older_than=0) == 0
    assert blobs.objects() == [digest]


@pytest.mark.parametrize("digest", [sha(b"never stored"), "../../etc/passwd", "", "AB" * 32])
async def test_missing_blob(blobs: Blobs, digest: str) -> None:
    s = blobs.store
    assert not await s.exists(digest)
    assert await s.size(digest) is None
    with pytest.raises(BlobNotFound):
        await read_all(s.open_range(digest))
    await s.delete(digest)


async def test_ping(blobs: Blobs) -> None:
    await blobs.store.ping()
    assert blobs.leftovers() == []
    assert blobs.objects() == []


@pytest.mark.parametrize(
    ("fault", "reported"),
    [
        (errno.ENOSPC, BlobStoreFull),
        (errno.EACCES, BlobStoreUnavailable),
        (errno.EROFS, BlobStoreUnavailable),
    ],
)
async def test_local_ping_names_the_fault_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: int, reported: type[Exception]
) -> None:
    """A data dir that is full, read-only or not ours: the store's own error naming the
    directory (the start's one line, /ready's `error: BlobStoreFull`), not an OSError."""
    blobs = _local(tmp_path)

    def failing(fd: int, data: bytes) -> None:
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr("bus.blobs.local.direct.write_all", failing)
    with pytest.raises(reported) as e:
        await blobs.store.ping()
    assert type(e.value) is reported and str(tmp_path / "blobs") in str(e.value)
    assert blobs.leftovers() == []


# -- manifests --------------------------------------------------------------------------

# Chunk sizes with every kind of neighbour: empty chunks, 1-byte chunks, bigger ones.
SMALL_CHUNKS = [b"abc", b"", b"d", b"efghi", b"", b"jklm", b"n"]


async def store_chunks(store: BlobStore, chunks: Sequence[bytes]) -> list[tuple[str, int]]:
    return [await store.put_stream(feed([c])) for c in chunks]


async def test_read_manifest_every_boundary(blobs: Blobs) -> None:
    manifest = await store_chunks(blobs.store, SMALL_CHUNKS)
    whole = b"".join(SMALL_CHUNKS)
    assert await read_all(read_manifest(blobs.store, manifest)) == whole
    assert await read_all(read_manifest(blobs.store, manifest, 4)) == whole[4:]
    for start in range(len(whole) + 1):
        for end in range(start, len(whole) + 1):
            got = await read_all(read_manifest(blobs.store, manifest, start, end))
            assert got == whole[start:end], (start, end)


async def test_read_manifest_across_big_chunks(blobs: Blobs) -> None:
    chunks = [BIG[: 3 * MiB + 5], BIG[3 * MiB + 5 : 4 * MiB], BIG[4 * MiB : 6 * MiB + 1]]
    manifest = await store_chunks(blobs.store, chunks)
    whole = b"".join(chunks)
    cuts = [0, 1, MiB - 1, MiB, 3 * MiB + 4, 3 * MiB + 5, 3 * MiB + 6, 4 * MiB, len(whole) - 1]
    for start in cuts:
        for end in [*cuts, len(whole)]:
            if end >= start:
                got = await read_all(read_manifest(blobs.store, manifest, start, end))
                assert got == whole[start:end], (start, end)


async def test_read_manifest_opens_only_the_chunks_it_needs(blobs: Blobs) -> None:
    rec = Recording(blobs.store)
    manifest = await store_chunks(rec, SMALL_CHUNKS)
    # bytes [5, 10) are "fghi" + "j": the 3rd..5th chunks (the empty one included) are
    # not opened, nor is anything after "j"; each chunk is opened once, at the right range.
    assert await read_all(read_manifest(rec, manifest, 5, 10)) == b"fghij"
    assert rec.opened == [(manifest[3][0], 1, 4), (manifest[5][0], 0, 1)]


@pytest.mark.parametrize(("start", "end"), [(0, 15), (14, 15), (5, 4), (-1, 3)])
async def test_read_manifest_rejects_ranges_outside_the_file(
    blobs: Blobs, start: int, end: int
) -> None:
    manifest = await store_chunks(blobs.store, SMALL_CHUNKS)  # 14 bytes
    with pytest.raises(ValueError):
        await read_all(read_manifest(blobs.store, manifest, start, end))


async def test_read_manifest_missing_chunk(blobs: Blobs) -> None:
    manifest = [*await store_chunks(blobs.store, [b"abc"]), (sha(b"gone"), 4)]
    with pytest.raises(BlobNotFound):
        await read_all(read_manifest(blobs.store, manifest))


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "generic"])
async def test_hash_manifest(blobs: Blobs, wrapped: bool) -> None:
    store: BlobStore = Recording(blobs.store) if wrapped else blobs.store
    chunks = [*SMALL_CHUNKS, BIG[: 5 * MiB + 1], b"", BIG[5 * MiB + 1 :]]
    manifest = await store_chunks(store, chunks)
    assert await hash_manifest(store, manifest) == sha(b"".join(chunks))
    assert await hash_manifest(store, manifest[::-1]) == sha(b"".join(chunks[::-1]))
    assert await hash_manifest(store, []) == sha(b"")


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "generic"])
async def test_hash_manifest_asks_whether_to_keep_going(blobs: Blobs, wrapped: bool) -> None:
    """`keep_going` is asked between chunks once `check_every` bytes were hashed since the
    last time (never before the first); a False stops the hash."""
    store: BlobStore = Recording(blobs.store) if wrapped else blobs.store
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10, b"e" * 10]
    manifest = await store_chunks(store, chunks)
    answers: list[bool] = []

    async def keep_going() -> bool:
        answers.append(True)
        return True

    # Asked before the 3rd and 5th chunks (20 bytes hashed each time since the last ask).
    digest = await hash_manifest(store, manifest, keep_going=keep_going, check_every=20)
    assert digest == sha(b"".join(chunks))
    assert len(answers) == 2

    asked = 0

    async def stop_at_second() -> bool:
        nonlocal asked
        asked += 1
        return asked < 2

    with pytest.raises(HashAbandoned):
        await hash_manifest(store, manifest, keep_going=stop_at_second, check_every=20)
    assert asked == 2


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "generic"])
async def test_hash_manifest_refuses_a_wrong_manifest(blobs: Blobs, wrapped: bool) -> None:
    store: BlobStore = Recording(blobs.store) if wrapped else blobs.store
    [(digest, size)] = await store_chunks(store, [b"abcdef"])
    with pytest.raises(BlobNotFound):
        await hash_manifest(store, [(digest, size), (sha(b"gone"), 4)])
    with pytest.raises(ValueError):
        await hash_manifest(store, [(digest, size + 1)])
    with pytest.raises(ValueError):
        await hash_manifest(store, [(digest, size - 1)])


# -- local only -------------------------------------------------------------------------


async def test_local_layout_and_path_of(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest, _ = await store.put_stream(feed([b"hello"]))
    path = tmp_path / "chunks" / digest[0:2] / digest[2:4] / digest
    assert store.path_of(digest) == path
    assert path.read_bytes() == b"hello"
    for bad in ["../../etc/passwd", digest.upper(), digest[:-1], digest + "0"]:
        with pytest.raises(ValueError):
            store.path_of(bad)


async def test_local_blobs_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Every user's bytes: no other account may list or read them (files were 0644 and
    directories 0755 under the usual umask, as the data dir itself)."""
    blobs = _local(tmp_path)
    small = await blobs.store.put_stream(feed([b"private"]))
    big = await blobs.store.put_stream(feed(split(BIG, [65536])))
    root = tmp_path / "blobs"
    assert isinstance(blobs.store, LocalBlobStore)
    paths = [root, root / "chunks", root / "tmp"]
    for digest, _ in (small, big):
        path = blobs.store.path_of(digest)
        paths += [path, path.parent, path.parent.parent]
    assert {p: oct(p.stat().st_mode & 0o077) for p in paths} == {p: "0o0" for p in paths}


def test_open_blob_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_blob_store(f"file://{tmp_path / 'abs'}")
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "abs"
    assert (tmp_path / "abs" / "chunks").is_dir() and (tmp_path / "abs" / "tmp").is_dir()
    local = open_blob_store(f"file://localhost{tmp_path / 'abs'}")
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "abs"
    monkeypatch.chdir(tmp_path)
    rel = open_blob_store("file://rel/blobs")
    assert isinstance(rel, LocalBlobStore) and rel.root == Path("rel/blobs")
    assert (tmp_path / "rel" / "blobs" / "chunks").is_dir()
    settings = Settings(data_dir=tmp_path / "data", s3_endpoint="http://127.0.0.1:9")
    s3 = open_blob_store("s3://bucket/some/prefix/", settings)
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.prefix, s3.options.endpoint) == (
        "bucket",
        "some/prefix/",
        settings.s3_endpoint,
    )
    assert s3.key_of("ab" * 32) == "some/prefix/chunks/" + "ab" * 32
    assert s3.spool_dir == tmp_path / "data" / "s3-spool"
    bare = open_blob_store("s3://bucket", settings)
    assert isinstance(bare, S3BlobStore) and bare.prefix == ""
    for bad in ["file://", "http://x/y", "/just/a/path", "s3://", "s3:///prefix"]:
        with pytest.raises(ValueError):
            open_blob_store(bad)


def test_sweep_tmp_removes_only_old_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old, fresh = tmp_path / "tmp" / "old.part", tmp_path / "tmp" / "fresh.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    assert store.sweep_tmp() == 1
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["fresh.part"]


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "buffered"])
async def test_local_write_failure_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_io: bool
) -> None:
    blobs = _local(tmp_path, direct_io=direct_io)
    writes = 0
    # The write a big put makes: past the page cache (bus/blobs/direct.py) or through it.
    target = "bus.blobs.direct.DirectWriter._write" if direct_io else "bus.blobs.local._writev_all"
    real_write = direct_module.DirectWriter._write if direct_io else local_module._writev_all

    def failing_write(first: Any, buffers: Any) -> None:
        # (writer, view) for the direct writer's method, (fd, buffers) for _writev_all.
        nonlocal writes
        writes += 1
        if writes == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(first, buffers)

    monkeypatch.setattr(target, failing_write)
    # A full disk is the store's own error (the API's 507), not a bare OSError (a 500).
    with pytest.raises(BlobStoreFull) as e:
        await blobs.store.put_stream(feed(split(BIG, [65536])))
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert writes == 2
    assert blobs.objects() == []
    assert blobs.leftovers() == []


@pytest.mark.parametrize("size", [100, len(BIG)], ids=["small", "big"])
async def test_s3_spool_disk_full_keeps_nothing(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    blobs, store = _s3(tmp_path, s3_server)

    def full(f: Any, buffers: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bus.blobs.s3._write_all", full)
    try:
        with pytest.raises(BlobStoreFull) as e:
            await store.put_stream(feed(split(BIG[:size], [65536])))
        assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
        assert blobs.objects() == []
        assert blobs.leftovers() == []
    finally:
        await store.close()


async def test_local_fsync_failure_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = _local(tmp_path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("bus.blobs.local.os.fsync", failing_fsync)
    with pytest.raises(OSError) as e:
        await blobs.store.put_stream(feed([b"hello"]))
    assert e.value.errno == errno.EIO
    assert blobs.objects() == []
    assert blobs.leftovers() == []


async def test_also_hash_is_fed_every_byte_in_order(blobs: Blobs) -> None:
    """`also_hash` (an upload's running digest) sees exactly the stored bytes, in order,
    continuing from whatever it had already hashed."""
    running = hashlib.sha256(b"before")
    digest, _ = await blobs.store.put_stream(
        feed(split(BIG, [1, 65536, 4 * MiB + 3])), also_hash=running
    )
    assert digest == sha(BIG)
    assert running.hexdigest() == sha(b"before" + BIG)


@pytest.mark.parametrize(
    "size", [1, 4096, INLINE, INLINE + 1, local_module.SMALL_PUT, local_module.SMALL_PUT + 1]
)
async def test_small_and_boundary_sized_puts(blobs: Blobs, size: int) -> None:
    """Around the inline tier's size and the local store's one-hop size (SMALL_PUT): same
    digest, bytes, running digest and cap either side of them."""
    data = BIG[:size]
    running = hashlib.sha256(b"before")
    got = await blobs.store.put_stream(feed(split(data, [1000, 0])), also_hash=running)
    assert got == (sha(data), size)
    assert running.hexdigest() == sha(b"before" + data)
    assert await read_all(blobs.store.open_range(sha(data))) == data
    with pytest.raises(BlobTooLarge):
        await blobs.store.put_stream(feed(split(data + b"x", [1000])), max_bytes=size)
    assert blobs.objects() == [sha(data)]
    assert blobs.leftovers() == []


async def test_local_small_put_is_one_thread_hop_and_cleans_up_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = _local(tmp_path)
    hops: list[str] = []
    real_run = asyncio.get_running_loop().run_in_executor

    def counting(executor: Any, fn: Any, *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return real_run(executor, fn, *args)

    monkeypatch.setattr(asyncio.get_running_loop(), "run_in_executor", counting)
    await blobs.store.put_stream(feed([b"small ", b"file"]))
    assert hops == ["_put_small"]
    hops.clear()
    await blobs.store.put_stream(feed(split(BIG[: local_module.SMALL_PUT + 1], [65536])))
    assert hops[0] == "_open_tmp" and "_put_small" not in hops  # the streaming way

    def failing_write(fd: int, buffers: list[bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bus.blobs.local._writev_all", failing_write)
    with pytest.raises(BlobStoreFull) as e:
        await blobs.store.put_stream(feed([b"will not fit"]))
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert sha(b"will not fit") not in blobs.objects()
    assert blobs.leftovers() == []
