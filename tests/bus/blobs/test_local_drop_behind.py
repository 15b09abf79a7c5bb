"""Drop-behind in the local store (bus/blobs/local.py `_FADVISE`): a big blob leaves the page
cache once it is durable, a small one stays, and `drop_behind=False` keeps every blob.

What is in the page cache is asked of the kernel itself (mincore on a mapping of the blob,
which does not fault pages in)."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.blobs import local
from bus.blobs.factory import open_blob_store
from bus.config.settings import Settings

pytestmark = pytest.mark.skipif(local._FADVISE is None, reason="no posix_fadvise here")

BIG = 4 * 1024 * 1024  # over SMALL_PUT: stored by _put_large
SMALL = 64 * 1024


def _resident_pages(path: Path) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages in all)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec), pages


async def _body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def test_a_big_blob_leaves_the_page_cache_once_durable(tmp_path: Path) -> None:
    store = local.LocalBlobStore(tmp_path)
    data = os.urandom(BIG)
    digest, _ = await store.put_stream(_body(data))
    resident, pages = _resident_pages(store.path_of(digest))
    assert resident < pages // 10, f"{resident} of {pages} pages still cached"
    # And it reads back whole (from the disk now).
    assert store.path_of(digest).read_bytes() == data


async def test_a_small_blob_stays_cached(tmp_path: Path) -> None:
    store = local.LocalBlobStore(tmp_path)
    data = os.urandom(SMALL)
    digest, _ = await store.put_stream(_body(data))
    resident, pages = _resident_pages(store.path_of(digest))
    assert resident == pages


async def test_drop_behind_off_keeps_big_blobs_cached(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"CAIRN_DATA_DIR": str(tmp_path / "data"), "CAIRN_BLOB_DROP_BEHIND": "false"}
    )
    store = open_blob_store(f"file://{tmp_path / 'blobs'}", settings)
    assert isinstance(store, local.LocalBlobStore)
    digest, _ = await store.put_stream(_body(os.urandom(BIG)))
    resident, pages = _resident_pages(store.path_of(digest))
    assert resident > pages * 9 // 10, f"only {resident} of {pages} pages cached"
