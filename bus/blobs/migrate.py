"""Copy every blob of one store into another (`cairn blobs migrate --to s3://...`).

Resumable by construction: a blob already in the target with the right size is skipped,
and the target only ever holds verified blobs (a put is durable and checked when it
returns; the S3 store's PUT carries the sha256, which S3 verifies). So an interrupted run
is simply started again. Every copied chunk is verified twice: the target's `put_stream`
hashes what it read from the source and the digest must equal the blob's name (a source
blob that rotted on disk is reported, not copied), and the target store verifies it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from domain.ports import BlobStore


@dataclass
class MigrationReport:
    total: int = 0
    total_bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.copied + self.skipped + len(self.failed)

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} blobs ({self.copied} copied, {self.skipped} already"
            f" there, {len(self.failed)} failed), {self.copied_bytes / 2**20:.1f} MiB copied"
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
            digest, got = await target.put_stream(source.open_range(sha), max_bytes=size)
            if (digest, got) != (sha, size):
                # The target now holds the rotten bytes under their own name: harmless
                # (unreferenced, the collector takes it); the blob is reported.
                report.failed.append(sha)
                return
            report.copied += 1
            report.copied_bytes += size

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
    if progress is not None:
        progress(report)
    return report
