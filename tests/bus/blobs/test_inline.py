"""The inline tier's own rules (bus/blobs/inline.py); the port's are in the contract suite.

Which tier takes a put, that blobs stored before the tier existed stay readable through
it, that a manifest hashes across both tiers, the collector's race, what a presigning
store may presign, and how the factory and the settings choose the tier.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import asyncpg
import pytest

from bus.blobs.errors import BlobNotFound, BlobStoreUnavailable
from bus.blobs.factory import open_blob_store
from bus.blobs.inline import InlineBlobStore, InlinePresigningBlobStore
from bus.blobs.local import LocalBlobStore
from bus.blobs.manifests import hash_manifest, read_manifest
from bus.blobs.s3 import S3BlobStore
from bus.config.settings import INLINE_MAX_BYTES, Settings

LIMIT = 4096


async def feed(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in it])


@pytest.fixture
async def tiered(tmp_path: Path, db_url: str) -> AsyncIterator[InlineBlobStore]:
    store = InlineBlobStore(LocalBlobStore(tmp_path / "blobs"), db_url, max_bytes=LIMIT)
    yield store
    await store.close()


def files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "blobs" / "chunks").rglob("*") if p.is_file())


async def rows(db_url: str) -> dict[str, tuple[int, float]]:
    conn = await asyncpg.connect(db_url)
    try:
        got = await conn.fetch("SELECT sha256, size, stored_at FROM blobs.inline")
    finally:
        await conn.close()
    return {r["sha256"]: (r["size"], r["stored_at"]) for r in got}


async def test_a_stream_within_the_limit_is_a_row_and_a_longer_one_a_file(
    tiered: InlineBlobStore, tmp_path: Path, db_url: str
) -> None:
    small, at_limit, over = b"s" * 10, os.urandom(LIMIT), os.urandom(LIMIT + 1)
    # Pieces that cross the limit only with the last one: the head gathered goes along.
    for data in (small, at_limit, over):
        pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        assert await tiered.put_stream(feed(pieces)) == (sha(data), len(data))
    assert set(await rows(db_url)) == {sha(small), sha(at_limit)}
    assert files(tmp_path) == [sha(over)]
    for data in (small, at_limit, over):
        assert await tiered.size(sha(data)) == len(data)
        assert await read_all(tiered.open_range(sha(data))) == data
        assert await read_all(tiered.open_range(sha(data), 3, 5)) == data[3:8]


async def test_blobs_stored_before_the_tier_are_read_listed_and_deleted_through_it(
    tiered: InlineBlobStore, tmp_path: Path, db_url: str
) -> None:
    old = b"stored as a file before the tier existed"
    assert await tiered.inner.put_stream(feed([old])) == (sha(old), len(old))
    new, _ = await tiered.put_stream(feed([b"a row"]))
    assert await tiered.exists(sha(old)) and await tiered.size(sha(old)) == len(old)
    assert await read_all(tiered.open_range(sha(old), 6)) == old[6:]
    listed = sorted((d, n) for d, n, _ in [b async for b in tiered.iter_blobs()])
    assert listed == sorted([(sha(old), len(old)), (new, 5)])
    gone = await tiered.delete_many([sha(old), new], stored_before=time.time() + 60)
    assert gone == {sha(old): len(old), new: 5}
    assert files(tmp_path) == [] and await rows(db_url) == {}
    with pytest.raises(BlobNotFound):
        await read_all(tiered.open_range(new))


async def test_the_listing_pages_through_the_rows(
    tiered: InlineBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bus.blobs.inline.LIST_PAGE", 3)
    datas = [f"blob {i}".encode() for i in range(8)]
    for d in datas:
        await tiered.put_stream(feed([d]))
    listed = [d async for d, _, _ in tiered.iter_blobs()]
    assert sorted(listed) == sorted(sha(d) for d in datas)
    assert len(listed) == len(set(listed))


async def test_a_put_of_the_same_bytes_keeps_the_row_from_the_collector(
    tiered: InlineBlobStore, db_url: str
) -> None:
    digest, _ = await tiered.put_stream(feed([b"dedup"]))
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE blobs.inline SET stored_at = stored_at - 7200")
    finally:
        await conn.close()
    # The collector listed it as two hours old; a put of the same bytes lands before its
    # delete: the delete judges the refreshed row, not the listing.
    cutoff = time.time() - 3600
    await tiered.put_stream(feed([b"dedup"]))
    assert await tiered.delete_many([digest], stored_before=cutoff) == {}
    assert (await rows(db_url))[digest][1] > cutoff
    assert await tiered.delete_many([digest], stored_before=time.time() + 1) == {digest: 5}


async def test_a_manifest_across_both_tiers_is_read_and_hashed(tiered: InlineBlobStore) -> None:
    parts = [os.urandom(100), os.urandom(3 * LIMIT), b"", os.urandom(LIMIT)]
    manifest = [await tiered.put_stream(feed([p])) for p in parts]
    whole = b"".join(parts)
    assert await hash_manifest(tiered, manifest) == sha(whole)
    assert await read_all(read_manifest(tiered, manifest, 50, len(whole) - 50)) == whole[50:-50]
    with pytest.raises(ValueError):
        await hash_manifest(tiered, [(manifest[0][0], 99)])
    with pytest.raises(ValueError):
        await hash_manifest(tiered, [(manifest[1][0], 5)])
    with pytest.raises(BlobNotFound):
        await hash_manifest(tiered, [(sha(b"never"), 5)])


async def test_rows_stay_readable_after_the_size_is_lowered(
    tiered: InlineBlobStore, tmp_path: Path, db_url: str
) -> None:
    data = os.urandom(3000)
    digest, _ = await tiered.put_stream(feed([data]))
    lowered = InlineBlobStore(tiered.inner, db_url, max_bytes=1000)
    try:
        # Ranges past the new size look in the blob store first, then find the row.
        assert await read_all(lowered.open_range(digest, 0, 3000)) == data
        assert await read_all(lowered.open_range(digest, 2000, 1000)) == data[2000:]
        assert await hash_manifest(lowered, [(digest, 3000)]) == sha(data)
        with pytest.raises(BlobNotFound):
            await read_all(lowered.open_range(sha(b"none"), 0, 2000))
        with pytest.raises(BlobNotFound):
            await hash_manifest(lowered, [(sha(b"none"), 2000)])
        big = os.urandom(2000)
        assert await lowered.put_stream(feed([big])) == (sha(big), 2000)
        assert files(tmp_path) == [sha(big)]
        assert await read_all(lowered.open_range(sha(big), 1500, 500)) == big[1500:]
    finally:
        await lowered.close()


class _Presigner(LocalBlobStore):
    async def presigned_get(self, sha256: str, **_: object) -> str:
        return f"https://bucket.example/{sha256}"


async def test_only_what_is_not_inline_is_presigned(tmp_path: Path, db_url: str) -> None:
    store = InlinePresigningBlobStore(_Presigner(tmp_path / "b"), db_url, max_bytes=LIMIT)
    try:
        small, _ = await store.put_stream(feed([b"small"]))
        big, _ = await store.put_stream(feed([os.urandom(LIMIT + 1)]))
        assert await store.presigned_get(small, expires=60) is None
        assert await store.presigned_get(big, expires=60) == f"https://bucket.example/{big}"
    finally:
        await store.close()


def test_the_factory_puts_the_tier_in_front_when_there_is_a_database(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'b'}"
    with_db = Settings(database_url="postgresql://x/y", blob_inline_bytes=LIMIT)
    store = open_blob_store(url, with_db)
    assert isinstance(store, InlineBlobStore) and store.max_bytes == LIMIT
    assert isinstance(store.inner, LocalBlobStore)
    assert isinstance(open_blob_store(url, with_db, inline=False), LocalBlobStore)
    off = Settings(database_url="postgresql://x/y", blob_inline_bytes=0)
    assert isinstance(open_blob_store(url, off), LocalBlobStore)
    assert isinstance(open_blob_store(url, Settings(database_url=None)), LocalBlobStore)
    s3 = open_blob_store(
        "s3://bucket", Settings(database_url="postgresql://x/y", data_dir=tmp_path)
    )
    assert isinstance(s3, InlinePresigningBlobStore) and isinstance(s3.inner, S3BlobStore)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 64 * 1024), ("128K", 128 * 1024), ("0", 0), ("64M", INLINE_MAX_BYTES)],
)
def test_the_inline_size_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int
) -> None:
    if value is None:
        monkeypatch.delenv("CAIRN_BLOB_INLINE_BYTES", raising=False)
    else:
        monkeypatch.setenv("CAIRN_BLOB_INLINE_BYTES", value)
    assert Settings.from_env().blob_inline_bytes == expected


async def test_the_database_down_is_the_blob_store_unavailable(tmp_path: Path) -> None:
    """A small put or read while PostgreSQL is down (restarting, refusing connections) was
    a raw ConnectionRefusedError, a 500 internal_error that no client retries; it is the
    store's 503 blob_store_unavailable, as S3 down is."""
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = InlineBlobStore(
        LocalBlobStore(tmp_path), f"postgresql://cairn@127.0.0.1:{port}/cairn", max_bytes=1024
    )
    try:
        with pytest.raises(BlobStoreUnavailable):
            await store.put_stream(feed([b"small"]))
        with pytest.raises(BlobStoreUnavailable):
            await store.size(sha(b"small"))
        with pytest.raises(BlobStoreUnavailable):
            await read_all(store.open_range(sha(b"small")))
        with pytest.raises(BlobStoreUnavailable):
            await store.ping()
        # A big put never touches the table.
        assert (await store.put_stream(feed([b"x" * 2000])))[1] == 2000
    finally:
        await store.close()
