"""How a tus PATCH body becomes pieces (api/tus/appender.py `Appender`): reads of any size
are cut at piece boundaries, each piece streams into the (real, local) blob store while it
arrives, and the running digest after each piece is that of the bytes before its end.

No bus here: appends are what test_controller.py covers; this checks the storage pipeline alone
(`trailer=True` keeps pieces back instead of appending them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from api.tus.appender import Appender, Fresh
from bus.blobs.local import LocalBlobStore

PIECE = 1024 * 1024


def _appender(tmp_path: Path, length: int) -> tuple[Appender, LocalBlobStore]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    c: Any = SimpleNamespace(blobs=blobs, settings=SimpleNamespace(tus_piece_bytes=PIECE))
    fresh = Fresh(f"upload-{os.urandom(4).hex()}", length)
    return Appender(c, None, None, fresh, limit=length, checksum=None, trailer=True), blobs


async def test_reads_of_any_size_become_whole_pieces_in_order(tmp_path: Path) -> None:
    data = os.urandom(3 * PIECE + 12345)
    appender, blobs = _appender(tmp_path, len(data))
    # Uneven reads, several straddling a piece boundary, one bigger than a whole piece.
    sizes = [1, 65536, 999_999, 2 * PIECE + 7, 3]
    pos = 0
    for size in sizes:
        await appender.feed(data[pos : pos + size])
        pos += size
    await appender.feed(data[pos:])
    await appender._store_tail()
    pieces = appender.pending
    assert [p["size"] for p in pieces] == [PIECE, PIECE, PIECE, 12345]
    stored = b""
    for p in pieces:
        chunk = blobs.path_of(p["sha256"]).read_bytes()
        assert hashlib.sha256(chunk).hexdigest() == p["sha256"]
        stored += chunk
    assert stored == data
    # The running digest's state at each piece's end covers exactly the bytes before it.
    for end, state in appender.snapshots.items():
        assert state.hexdigest() == hashlib.sha256(data[:end]).hexdigest()
    assert sorted(appender.snapshots) == [PIECE, 2 * PIECE, 3 * PIECE, len(data)]
    await appender.close()


async def test_an_empty_body_stores_nothing(tmp_path: Path) -> None:
    appender, _ = _appender(tmp_path, 10)
    await appender._store_tail()
    assert appender.pending == [] and appender.snapshots == {}
    await appender.close()
