"""Copy every blob of one store into another (`cairn blobs migrate --to s3://...`).

Resumable by construction: a blob already in the target with the right size is skipped,
and the target only ever holds verified blobs (a put is durable and checked when it
returns; the S3 store's PUT carries the sha256, which S3 verifies). So an interrupted run
is simply started again. Every copied chunk is verified twice: the target's `put_stream`
hashes what it read from the source and the digest must equal the blob's name (a source
blob that rotted on disk is reported, not copied), and the target store verifies it. A
chunk over S3's 5 GiB single-PUT limit (a local store may hold one) is sent by the S3
store as a multipart upload, each part verified (bus/blobs/s3.py `_put_multipart`).

Cairn keeps running meanwhile (README "Backup and restore" runs this against a live
install), so a blob listed may be collected before it is copied: that one is counted as
gone, not an error (unreferenced, it was not needed). A source that verifies its own reads
(S3 hashes a whole-chunk read) reports rot as BlobCorrupt: reported like a digest
mismatch. Neither stops the run; anything else (a store down) does, after the copies in
flight have ended, so none is abandoned with its spool file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bus.blobs.errors import BlobCorrupt, BlobNotFound
from domain.ports import BlobStore


@dataclass
class MigrationReport:
    total: int = 0
    total_bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    gone: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.gone + len(self.failed)

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} blobs ({self.copied} copied, {self.skipped} already"
            f" there, {len(self.failed)} failed"
            + (f", {self.gone} gone from the source" if self.gone else "")
            + f"), {self.copied_bytes / 2**20:.1f} MiB copied"
            f" of {self.total_bytes / 2**20:.1f} MiB"
        )


async def migrate(
    source: BlobStore,
    target: BlobStore,
    *,
    concurrency: int = 4,
    progress: Callable[[MigrationReport], None] | None = None,
    every: float = 2.0,
) -> MigrationReport:
    """Copy what `target` lacks; call `progress` at most every `every` seconds and at the end."""
    report = MigrationReport()
    # A first pass counts, so progress can say "of how many"; the listing is cheap next
    # to the copy and keeps memory flat (nothing is collected).
    async for _sha, size, _at in source.iter_blobs():
        report.total += 1
        report.total_bytes += size
    gate = asyncio.Semaphore(concurrency)
    last = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def copy(sha: str, size: int) -> None:
        async with gate:
            if await target.size(sha) == size:
                report.skipped += 1
                return
            try:
                digest, got = await target.put_stream(source.open_range(sha), max_bytes=size)
            except BlobNotFound:
                report.gone += 1  # collected since the listing
                return
            except BlobCorrupt:
                report.failed.append(sha)
                return
            if (digest, got) != (sha, size):
                # The target now holds the rotten bytes under their own name: harmless
                # (unreferenced, the collector takes it); the blob is reported.
                report.failed.append(sha)
                return
            report.copied += 1
            report.copied_bytes += size

    try:
        async for sha, size, _at in source.iter_blobs():
            while len(tasks) >= concurrency * 2:  # bounded: never the whole listing in tasks
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    tasks.discard(t)
                    t.result()
            tasks.add(asyncio.create_task(copy(sha, size)))
            if progress is not None and time.monotonic() - last >= every:
                last = time.monotonic()
                progress(report)
        for pending in asyncio.as_completed(tasks):
            await pending
    finally:
        # A failed run (or Ctrl-C) ends the copies still in flight before it returns, so
        # each removes its spool file (S3) or temp file (local) instead of being dropped.
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if progress is not None:
        progress(report)
    return report
