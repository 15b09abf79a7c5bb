"""Writing past the page cache (bus/blobs/direct.py), against the kernel itself, and the
local store's big puts that use it (bus/blobs/local.py `_put_large`)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bus.blobs import direct, local
from tests.bus.blobs.test_blobstore_contract import split

BUF = 4 * direct.ALIGN  # a small buffer, so a few KiB cross it several times


@pytest.fixture
def direct_fd(tmp_path: Path) -> Iterator[int]:
    """A file on the test's filesystem with O_DIRECT on (skipped where it is refused)."""
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        if not direct.enable(fd):
            pytest.skip("this filesystem refuses O_DIRECT")
        yield fd
    finally:
        os.close(fd)


def _supported(where: Path) -> bool:
    fd = os.open(where / "probe", os.O_WRONLY | os.O_CREAT)
    try:
        return direct.enable(fd)
    finally:
        os.close(fd)


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & direct.O_DIRECT)


@pytest.mark.parametrize(
    "size",
    [0, 1, direct.ALIGN - 1, direct.ALIGN, direct.ALIGN + 1, BUF - 1, BUF, BUF + 1, 5 * BUF + 77],
)
def test_every_byte_lands_in_order_whatever_the_length(
    tmp_path: Path, direct_fd: int, size: int
) -> None:
    data = os.urandom(size)
    writer = direct.DirectWriter(direct_fd, BUF)
    # Reads of odd sizes, some bigger than the buffer, in batches of several reads.
    pieces = split(data, [1000, 3 * BUF + 5, 1, 4096])
    for i in range(0, len(pieces), 3):
        writer(pieces[i : i + 3])
    writer.finish()
    writer.release()
    os.fsync(direct_fd)
    assert (tmp_path / "blob").read_bytes() == data


def test_the_tail_is_written_with_o_direct_turned_off(tmp_path: Path, direct_fd: int) -> None:
    writer = direct.DirectWriter(direct_fd, BUF)
    writer([b"x" * (BUF + 10)])
    assert _is_direct(direct_fd)  # whole buffers went directly
    writer.finish()
    assert not _is_direct(direct_fd)  # 10 bytes: a length O_DIRECT cannot take
    writer.release()
    assert (tmp_path / "blob").stat().st_size == BUF + 10


def test_whole_blocks_only_keep_o_direct_on_to_the_end(tmp_path: Path, direct_fd: int) -> None:
    writer = direct.DirectWriter(direct_fd, BUF)
    writer([b"y" * (2 * direct.ALIGN)])
    writer.finish()
    assert _is_direct(direct_fd)
    writer.release()
    assert (tmp_path / "blob").read_bytes() == b"y" * (2 * direct.ALIGN)


@pytest.mark.parametrize("refused_from", [1, 2])
def test_a_filesystem_that_refuses_direct_writes_gets_the_rest_through_the_cache(
    tmp_path: Path, direct_fd: int, monkeypatch: pytest.MonkeyPatch, refused_from: int
) -> None:
    """It took the flag, then refuses the writes (EINVAL, which writes nothing), from the
    first write on or from the second: every byte still lands, in order."""
    real_write = os.write
    calls = 0

    def refusing(fd: int, data: Any) -> int:
        nonlocal calls
        if fd == direct_fd and _is_direct(fd):
            calls += 1
            if calls >= refused_from:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing)
    data = os.urandom(3 * BUF + 10)
    writer = direct.DirectWriter(direct_fd, BUF)
    writer(split(data, [5000, 7]))
    writer.finish()
    writer.release()
    assert writer.direct is False and not _is_direct(direct_fd)
    assert calls == refused_from  # once refused, no direct write is tried again
    assert (tmp_path / "blob").read_bytes() == data


def test_other_write_errors_are_raised(direct_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    writer = direct.DirectWriter(direct_fd, BUF)
    with pytest.raises(OSError) as e:
        writer([b"z" * BUF])
    assert e.value.errno == errno.ENOSPC


def test_a_released_buffer_serves_the_next_writer(direct_fd: int) -> None:
    first = direct.DirectWriter(direct_fd, BUF)
    buf = first._buf
    first.release()
    second = direct.DirectWriter(direct_fd, BUF)
    assert second._buf is buf
    second.release()


def test_the_pool_keeps_at_most_pool_max_buffers(direct_fd: int) -> None:
    writers = [direct.DirectWriter(direct_fd, BUF) for _ in range(direct.POOL_MAX + 3)]
    for w in writers:
        w.release()
    assert len(direct._pool) == direct.POOL_MAX
    assert all(len(b) == BUF for b in direct._pool)


def test_a_buffer_must_be_whole_blocks(direct_fd: int) -> None:
    with pytest.raises(ValueError):
        direct.DirectWriter(direct_fd, direct.ALIGN + 1)
    with pytest.raises(ValueError):
        direct.DirectWriter(direct_fd, 0)


def test_a_descriptor_that_cannot_take_it_is_refused() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert direct.enable(w) is False  # closed: EBADF, said as False


# ---- the local store ------------------------------------------------------------------

BIG = 3 * local.WRITE_BUFFER + 12345  # over SMALL_PUT, whole buffers and a tail


async def _body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


def _count_writers(monkeypatch: pytest.MonkeyPatch) -> list[direct.DirectWriter]:
    made: list[direct.DirectWriter] = []

    class Counting(direct.DirectWriter):
        def __init__(self, fd: int, size: int) -> None:
            super().__init__(fd, size)
            made.append(self)

    monkeypatch.setattr(direct, "DirectWriter", Counting)
    return made


async def test_a_big_put_goes_past_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_writers(monkeypatch)
    store = local.LocalBlobStore(tmp_path)
    data = os.urandom(BIG)
    digest, size = await store.put_stream(_body(data))
    if not _supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    assert len(made) == 1 and made[0]._buf is None  # used, then its buffer given back
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), BIG)
    assert store.path_of(digest).read_bytes() == data


async def test_small_puts_and_turned_off_stores_write_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_writers(monkeypatch)
    small = os.urandom(local.SMALL_PUT)
    digest, _ = await local.LocalBlobStore(tmp_path / "a").put_stream(_body(small))
    assert (tmp_path / "a").exists() and hashlib.sha256(small).hexdigest() == digest
    data = os.urandom(BIG)
    for store in (
        local.LocalBlobStore(tmp_path / "b", direct_io=False),
        # Drop-behind off asks for big blobs to stay cached: a direct write never is.
        local.LocalBlobStore(tmp_path / "c", drop_behind=False),
    ):
        digest, _ = await store.put_stream(_body(data))
        assert store.path_of(digest).read_bytes() == data
    assert made == []


async def test_where_o_direct_is_refused_the_put_writes_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_writers(monkeypatch)
    monkeypatch.setattr(direct, "enable", lambda fd: False)
    store = local.LocalBlobStore(tmp_path)
    data = os.urandom(BIG)
    digest, _ = await store.put_stream(_body(data))
    assert made == []
    assert store.path_of(digest).read_bytes() == data


async def test_a_failed_direct_put_leaves_no_temp_file(tmp_path: Path) -> None:
    store = local.LocalBlobStore(tmp_path)

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(local.WRITE_BUFFER * 2)
        raise ConnectionResetError("client gone")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(failing())
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(("flag", "expect"), [(None, True), ("false", False)])
def test_the_setting_reaches_the_store(tmp_path: Path, flag: str | None, expect: bool) -> None:
    from bus.blobs.factory import open_blob_store
    from bus.config.settings import Settings

    env = {"CAIRN_DATA_DIR": str(tmp_path / "data")}
    if flag is not None:
        env["CAIRN_BLOB_DIRECT_IO"] = flag
    store = open_blob_store(f"file://{tmp_path / 'blobs'}", Settings.from_env(env))
    assert isinstance(store, local.LocalBlobStore)
    assert store._direct_io is expect
