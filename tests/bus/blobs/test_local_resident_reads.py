"""Small ranges from the page cache on the loop (bus/blobs/local.py `RESIDENT_READ_MAX`).

A small range of a blob a pool thread has opened before is read on the loop when every page
of it is cached, and in a thread otherwise. Which way a read went is seen by counting the
store's thread-side reads (`_read_small`); what is cached is the kernel's own state, emptied
with the same POSIX_FADV_DONTNEED that drop-behind uses and checked with mincore."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bus.blobs import local
from bus.blobs.errors import BlobNotFound
from tests.bus.blobs.test_local_drop_behind import _resident_pages

pytestmark = pytest.mark.skipif(
    local._NOWAIT is None or local._FADVISE is None, reason="no RWF_NOWAIT or posix_fadvise"
)

SMALL = 64 * 1024  # stays cached after its put
BIG = 4 * 1024 * 1024  # leaves the page cache once durable


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ThreadReads:
    """Counts the store's reads that went to a pool thread."""

    def __init__(self, store: local.LocalBlobStore) -> None:
        self.count = 0
        inner = store._read_small

        def counted(*args: Any) -> bytes:
            self.count += 1
            return inner(*args)

        store._read_small = counted  # type: ignore[method-assign]


async def _read(store: local.LocalBlobStore, digest: str, offset: int, length: int) -> bytes:
    return b"".join([p async for p in store.open_range(digest, offset, length)])


async def _put(store: local.LocalBlobStore, data: bytes) -> str:
    digest, _ = await store.put_stream(_body(data))
    return digest


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    resident, _ = _resident_pages(path)
    assert resident == 0, "the kernel kept the blob's pages: nothing to test"


async def _stored(
    tmp_path: Path, size: int
) -> tuple[local.LocalBlobStore, bytes, str, ThreadReads]:
    """A store holding one blob of `size` random bytes, its thread-side reads counted."""
    store = local.LocalBlobStore(tmp_path)
    data = os.urandom(size)
    digest = await _put(store, data)
    return store, data, digest, ThreadReads(store)


async def test_a_cached_range_of_an_opened_blob_is_read_on_the_loop(tmp_path: Path) -> None:
    store, data, digest, threads = await _stored(tmp_path, SMALL)
    # The first read of a blob goes to a thread, whatever is cached.
    assert await _read(store, digest, 0, 4096) == data[:4096]
    assert threads.count == 1
    for offset in (4096, 8192, SMALL - 4096, 100):
        assert await _read(store, digest, offset, 4096) == data[offset : offset + 4096]
    assert threads.count == 1


async def test_a_range_not_in_the_page_cache_is_read_in_a_thread(tmp_path: Path) -> None:
    store, data, digest, threads = await _stored(tmp_path, BIG)
    assert await _read(store, digest, 0, 4096) == data[:4096]
    _drop_cache(store.path_of(digest))
    offset = BIG // 2
    assert await _read(store, digest, offset, 4096) == data[offset : offset + 4096]
    assert threads.count == 2
    # That read brought the page in: the same range again comes from the cache.
    assert await _read(store, digest, offset, 4096) == data[offset : offset + 4096]
    assert threads.count == 2


async def test_a_range_over_the_cap_is_read_in_a_thread(tmp_path: Path) -> None:
    store, data, digest, threads = await _stored(tmp_path, SMALL * 4)
    length = local.RESIDENT_READ_MAX + 4096
    for _ in range(2):
        assert await _read(store, digest, 4096, length) == data[4096 : 4096 + length]
    assert threads.count == 2


async def test_a_deleted_blob_is_not_found_on_the_loop_either(tmp_path: Path) -> None:
    store, data, digest, _ = await _stored(tmp_path, SMALL)
    assert await _read(store, digest, 0, 4096) == data[:4096]
    await store.delete(digest)
    with pytest.raises(BlobNotFound):
        await _read(store, digest, 0, 4096)


async def test_a_range_past_the_end_is_refused_on_the_loop_as_in_a_thread(
    tmp_path: Path,
) -> None:
    store, _, digest, threads = await _stored(tmp_path, SMALL)
    await _read(store, digest, 0, 4096)
    with pytest.raises(ValueError):
        await _read(store, digest, SMALL - 100, 4096)
    assert threads.count == 1


async def test_small_reads_on_the_loop_open_the_blob_once(tmp_path: Path) -> None:
    # The descriptor stays open between them (bus/blobs/open_blobs.py); close() closes it.
    store, data, digest, threads = await _stored(tmp_path, SMALL)
    opens: list[str] = []
    inner = store._open_read

    def counted(sha256: str) -> tuple[int, int]:
        opens.append(sha256)
        return inner(sha256)

    store._open_read = counted  # type: ignore[method-assign]
    assert await _read(store, digest, 0, 4096) == data[:4096]  # in a thread: its own open
    for offset in (4096, 8192, 100, SMALL - 4096):
        assert await _read(store, digest, offset, 4096) == data[offset : offset + 4096]
    assert threads.count == 1 and opens == [digest, digest]
    await store.close()
    assert await _read(store, digest, 0, 4096) == data[:4096]  # opened again on the loop
    assert opens == [digest] * 3
