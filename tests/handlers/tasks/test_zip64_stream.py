"""ZIP64 by entry count, at the archive stream: compress's zip writer given 65,536 members
(one more than a plain zip's 16-bit count) over a real local blob store, cut into stored
chunks as a task does, gives an archive that Python's zipfile and Info-ZIP's `unzip -t`
accept, and that the extractor's listing reads whole. The same through the API and task
worker is tests/api/routes/test_task_zip64.py (slow: opt-in)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.blobs.local import LocalBlobStore
from bus.blobs.manifests import read_manifest
from domain.files import FileState
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.compress import archive_stream
from handlers.tasks.extract import _list_zip
from handlers.tasks.threads import BlobFile

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENTRIES = 0x10000
BODY = b"tiny member\n"


class Counter:
    """Stands in for the task run's progress: counts the bytes read."""

    def __init__(self) -> None:
        self.read = 0

    async def add(self, n: int) -> None:
        self.read += n


def has_zip64_end(archive: Path) -> bool:
    with archive.open("rb") as f:
        f.seek(max(0, archive.stat().st_size - 200))
        tail = f.read()
    return b"PK\x06\x06" in tail and b"PK\x06\x07" in tail


async def test_65536_members_make_a_zip64_archive_every_reader_accepts(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")

    async def body() -> object:
        yield BODY

    sha, size = await blobs.put_stream(body())  # type: ignore[arg-type]
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    member = FileState(
        id="x",
        owner="o",
        name="m",
        size=size,
        content_type="application/octet-stream",
        sha256=sha,
        manifest=((sha, size),),
        bucket="default",
        created_at=at,
        updated_at=at,
    )
    members = [(f"d{i // 1000:03d}/m{i:05d}.txt", member) for i in range(ENTRIES)]
    counter = Counter()
    sink = ArchiveSink(blobs, 1 << 20)
    await sink.drain(archive_stream("zip", blobs, members, counter, 0))  # type: ignore[arg-type]
    assert counter.read == ENTRIES * len(BODY)

    path = tmp_path / "many.zip"
    with path.open("wb") as out:
        async for piece in read_manifest(blobs, [(m["sha256"], m["size"]) for m in sink.manifest]):
            out.write(piece)
    assert path.stat().st_size == sink.size
    assert has_zip64_end(path)

    import zipfile

    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        assert len(infos) == ENTRIES
        assert [i.filename for i in infos[:2]] == ["d000/m00000.txt", "d000/m00001.txt"]
        assert z.read(infos[-1]) == BODY and infos[-1].filename == "d065/m65535.txt"
        assert z.testzip() is None
    if shutil.which("unzip"):
        done = await asyncio.to_thread(
            subprocess.run, ["unzip", "-tq", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No errors detected" in done.stdout

    loop = asyncio.get_running_loop()
    manifest = [(str(m["sha256"]), int(str(m["size"]))) for m in sink.manifest]
    listed = await asyncio.to_thread(_list_zip, BlobFile(blobs, manifest, loop))
    assert len(listed) == ENTRIES
    assert listed[-1].path == "d065/m65535.txt" and listed[-1].size == len(BODY)
