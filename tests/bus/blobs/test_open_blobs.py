"""The descriptors kept open for small reads on the loop (bus/blobs/open_blobs.py): opened
once, bounded, closed when idle, forgotten on delete, all closed on close."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from bus.blobs.open_blobs import OpenBlobs


class Opener:
    """Opens files named by key under `root`, counting the opens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[str] = []

    def __call__(self, key: str) -> tuple[int, int]:
        self.opened.append(key)
        fd = os.open(self.root / key, os.O_RDONLY)
        return fd, os.fstat(fd).st_size


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def opener(tmp_path: Path) -> Opener:
    for i in range(5):
        (tmp_path / f"b{i}").write_bytes(b"x" * (i + 1))
    return Opener(tmp_path)


async def test_a_blob_is_opened_once_for_many_reads(opener: Opener) -> None:
    blobs = OpenBlobs()
    first = blobs.get("b2", opener)
    assert first[1] == 3 and os.pread(first[0], 3, 0) == b"xxx"
    assert [blobs.get("b2", opener) for _ in range(3)] == [first] * 3
    assert opener.opened == ["b2"]
    blobs.close()
    assert not _is_open(first[0]) and len(blobs) == 0


async def test_past_its_capacity_the_least_recently_used_is_closed(opener: Opener) -> None:
    blobs = OpenBlobs(capacity=2)
    fd0, _ = blobs.get("b0", opener)
    fd1, _ = blobs.get("b1", opener)
    blobs.get("b0", opener)  # b1 is now the least recently used
    fd2, _ = blobs.get("b2", opener)
    assert not _is_open(fd1) and _is_open(fd0) and _is_open(fd2) and len(blobs) == 2
    blobs.get("b1", opener)  # opened again
    assert opener.opened == ["b0", "b1", "b2", "b1"]
    blobs.close()


async def test_an_idle_descriptor_is_closed_a_used_one_kept(opener: Opener) -> None:
    now = [100.0]
    blobs = OpenBlobs(idle=2.0, clock=lambda: now[0])
    idle_fd, _ = blobs.get("b0", opener)
    now[0] = 101.5
    busy_fd, _ = blobs.get("b1", opener)
    now[0] = 102.5
    blobs.get("b1", opener)
    blobs.sweep()  # b0 unused for 2.5 s, b1 for none
    assert not _is_open(idle_fd) and _is_open(busy_fd) and len(blobs) == 1
    now[0] = 104.0
    blobs.sweep()  # b1 unused for 1.5 s
    assert _is_open(busy_fd)
    now[0] = 105.0
    blobs.sweep()
    assert not _is_open(busy_fd) and len(blobs) == 0


class Swept(OpenBlobs):
    """Says when its timer swept."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.swept = asyncio.Event()

    def sweep(self) -> None:
        super().sweep()
        self.swept.set()


async def test_the_timer_sweeps_while_anything_is_open(opener: Opener) -> None:
    blobs = Swept(idle=0.05)
    fd, _ = blobs.get("b0", opener)
    await asyncio.wait_for(blobs.swept.wait(), 5)
    # The first sweep may come just before b0 is idle long enough; by the time one finds
    # it idle, it is closed and no timer is left.
    while len(blobs):
        blobs.swept.clear()
        await asyncio.wait_for(blobs.swept.wait(), 5)
    assert not _is_open(fd) and blobs._timer is None


async def test_a_forgotten_blob_is_closed_and_opened_afresh(opener: Opener) -> None:
    blobs = OpenBlobs()
    fd, _ = blobs.get("b3", opener)
    blobs.forget("b3")
    blobs.forget("b3")  # twice, or never opened: nothing happens
    blobs.forget("b4")
    assert not _is_open(fd) and len(blobs) == 0
    blobs.get("b3", opener)
    assert opener.opened == ["b3", "b3"]
    blobs.close()


async def test_an_opener_that_fails_leaves_nothing_behind(opener: Opener) -> None:
    blobs = OpenBlobs()
    with pytest.raises(FileNotFoundError):
        blobs.get("missing", opener)
    assert len(blobs) == 0
