"""The local store's vectored write (bus/blobs/local.py `_writev_all`): every buffer, in
order, whatever the kernel takes per call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bus.blobs import local


def _buffers() -> list[bytes]:
    # More buffers than one writev call takes (IOV_MAX), of uneven sizes, some empty.
    return [os.urandom(i % 97) for i in range(3000)]


def _write(tmp_path: Path, buffers: list[bytes]) -> Path:
    """`_writev_all` of `buffers` into a new file; its path."""
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        local._writev_all(fd, buffers)
    finally:
        os.close(fd)
    return path


def test_writes_every_buffer_in_order(tmp_path: Path) -> None:
    buffers = _buffers()
    path = _write(tmp_path, buffers)
    assert path.read_bytes() == b"".join(buffers)


def test_resumes_after_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev
    calls = 0

    def short(fd: int, views: list[memoryview]) -> int:
        # At most 7 bytes per call: every write stops inside some buffer.
        nonlocal calls
        calls += 1
        taken: list[bytes] = []
        room = 7
        for v in views:
            if room == 0:
                break
            taken.append(bytes(v[:room]))
            room -= len(taken[-1])
        return real(fd, taken)

    monkeypatch.setattr(local.os, "writev", short)
    buffers = _buffers()
    path = _write(tmp_path, buffers)
    data = b"".join(buffers)
    assert path.read_bytes() == data
    assert calls >= len(data) // 7
