"""The disk's own durable write speed: the ceiling of an upload that is durable when answered.

Cairn answers an upload's bytes only once they are on disk (written and fsynced); nginx's
WebDAV PUT and @tus/server's file store answer once the bytes are in the page cache, and
on a machine whose disk is slower than its memory they can outrun any durable store. So the
upload scenarios also copy the same bytes, in the same run, into a file on the filesystem
that holds Cairn's blobs, in 8 MiB writes with one fsync at the end (what
`dd bs=8M conv=fsync` does): no hashing, no HTTP, no second copy. Cairn's ratio to it says
how much of the hardware's durable write speed an upload uses.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from tests.bench.core import mb_per_s
from tests.bench.runner import Bench

DISK = "the disk: copy + fsync"
BLOCK = 8 * 1024 * 1024


def _copy_durably(src: Path, dst: Path) -> None:
    # A buffered writer: it writes all of each block (a raw one may write part of it).
    with open(src, "rb", buffering=0) as r, open(dst, "wb") as w:
        shutil.copyfileobj(r, w, BLOCK)
        w.flush()
        os.fsync(w.fileno())


async def measure(bench: Bench, files: list[Path]) -> float:
    """One run of the baseline beside a scenario's run: the same files, just written back
    (`bench.settle`), copied at once (one thread each) into the work dir beside Cairn's
    data, each fsynced; MB/s from the start to the last fsync. The copies are removed."""
    await bench.settle()
    into = bench.work / "disk-baseline"
    into.mkdir(parents=True, exist_ok=True)
    targets = [into / f"{k}-{f.name}" for k, f in enumerate(files)]
    t0 = time.perf_counter()
    try:
        await asyncio.gather(
            *[asyncio.to_thread(_copy_durably, f, t) for f, t in zip(files, targets, strict=True)]
        )
        seconds = time.perf_counter() - t0
    finally:
        for t in targets:
            t.unlink(missing_ok=True)
    return mb_per_s(sum(f.stat().st_size for f in files), seconds)
