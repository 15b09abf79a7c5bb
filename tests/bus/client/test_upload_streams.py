"""`cairn upload --streams`: one file's chunks in flight at once, each worker reading
through its own file handle; a failure stops what has not started and waits for the rest."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from bus.client.upload import _Chunks


def _file(tmp_path: Path, chunks: int, size: int) -> Path:
    path = tmp_path / "f.bin"
    path.write_bytes(b"".join(bytes([i]) * size for i in range(chunks)))
    return path


def test_chunks_go_streams_at_once_each_from_its_own_handle(tmp_path: Path) -> None:
    path = _file(tmp_path, 8, 100)
    # Every put waits until 4 are in the barrier: sequential sending would time out.
    barrier = threading.Barrier(4, timeout=10)
    handles: set[int] = set()
    seen: dict[int, bytes] = {}
    lock = threading.Lock()

    def put(f: BinaryIO, index: int) -> int:
        barrier.wait()
        f.seek(index * 100)
        data = f.read(100)
        with lock:
            handles.add(id(f))
            seen[index] = data
        return len(data)

    with _Chunks(path, 4) as chunks:
        assert chunks.send(put, list(range(8))) == 800
    assert seen == {i: bytes([i]) * 100 for i in range(8)}
    assert len(handles) == 4  # a handle per worker: seeks never interleave


def test_a_failed_chunk_stops_those_not_started_and_waits_for_the_running(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path, 20, 10)
    started: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()

    def put(f: BinaryIO, index: int) -> int:
        with lock:
            started.append(index)
        if index == 1:
            raise RuntimeError("chunk 1 refused")
        time.sleep(0.05)  # the running ones outlast the failure
        with lock:
            finished.append(index)
        return 10

    with _Chunks(path, 2) as chunks, pytest.raises(RuntimeError, match="chunk 1 refused"):
        chunks.send(put, list(range(20)))
    # Raised only once nothing runs any more: what started either finished or failed.
    assert sorted([*finished, 1]) == sorted(started)
    assert len(started) < 20  # the rest were never sent
