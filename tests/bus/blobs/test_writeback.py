"""Starting writeback early (bus/blobs/writeback.py), against the kernel itself, and the
local store's write that uses it (bus/blobs/local.py `_WriteBehind`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bus.blobs import local, writeback

linux_only = pytest.mark.skipif(not writeback.AVAILABLE, reason="sync_file_range is Linux's")


@linux_only
def test_the_kernel_takes_the_hint_for_a_written_range(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, os.urandom(1 << 20))
        assert writeback.start_writeback(fd, 0, 1 << 20) is True
        assert writeback.start_writeback(fd, 512 << 10, 512 << 10) is True
    finally:
        os.close(fd)


@linux_only
def test_a_bad_descriptor_is_refused_not_raised() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert writeback.start_writeback(w, 0, 4096) is False


def test_nothing_to_write_back_is_not_asked(tmp_path: Path) -> None:
    # A length of 0 would mean "to the end of the file" to the kernel, which takes it.
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"x" * 4096)
        assert writeback.start_writeback(fd, 0, 0) is False
    finally:
        os.close(fd)


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []

    def record(fd: int, offset: int, length: int) -> bool:
        calls.append((fd, offset, length))
        return True

    monkeypatch.setattr(local, "start_writeback", record)
    return calls


def test_each_batch_is_written_then_queued_at_its_own_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _calls(monkeypatch)
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT)
    try:
        write = local._WriteBehind(fd)
        write([b"abc", b"", b"defg"])
        write([b"hi"])
        write([b"jklmnop"])
    finally:
        os.close(fd)
    assert (tmp_path / "blob").read_bytes() == b"abcdefghijklmnop"
    assert calls == [(fd, 0, 7), (fd, 7, 2), (fd, 9, 7)]


def test_turned_off_it_only_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls(monkeypatch)
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT)
    try:
        local._WriteBehind(fd, early=False)([b"abc", b"def"])
    finally:
        os.close(fd)
    assert (tmp_path / "blob").read_bytes() == b"abcdef"
    assert calls == []


async def test_a_big_put_queues_every_batch_and_the_setting_reaches_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bus.blobs.factory import open_blob_store
    from bus.config.settings import Settings

    calls = _calls(monkeypatch)
    body = os.urandom(local.WRITE_BUFFER * 2 + 1000)

    async def stream() -> object:
        for i in range(0, len(body), 64 << 10):
            yield body[i : i + (64 << 10)]

    for flag, expect in (("true", 3), ("false", 0)):
        calls.clear()
        # Writeback is the buffered write's: direct writes (bus/blobs/direct.py) leave no
        # dirty pages to start on.
        settings = Settings.from_env(
            {"CAIRN_BLOB_EARLY_WRITEBACK": flag, "CAIRN_BLOB_DIRECT_IO": "false"}
        )
        store = open_blob_store(f"file://{tmp_path / flag}", settings)
        digest, size = await store.put_stream(stream())  # type: ignore[arg-type]
        assert size == len(body)
        assert len(calls) == expect
        assert sum(c[2] for c in calls) == (len(body) if expect else 0)
        assert store.path_of(digest).read_bytes() == body  # type: ignore[attr-defined]
