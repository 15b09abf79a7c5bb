"""`cairn blobs migrate`: a local store copied into S3, resumably, each chunk verified."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bus.blobs.local import LocalBlobStore
from bus.blobs.migrate import MigrationReport, migrate
from bus.blobs.s3 import S3BlobStore, S3Options
from tests.s3server import S3Server, use_test_credentials

ROOT = Path(__file__).resolve().parents[3]
CONTENTS = [b"", b"one", b"two" * 1000, os.urandom(3 * 1024 * 1024 + 7)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def filled(root: Path) -> LocalBlobStore:
    store = LocalBlobStore(root)
    for c in CONTENTS:
        await store.put_stream(one(c))
    return store


def s3_store(server: S3Server, tmp_path: Path) -> S3BlobStore:
    bucket = f"mig{secrets.token_hex(5)}"
    server.create_bucket(bucket)
    return S3BlobStore(
        S3Options(bucket=bucket, prefix="x/", endpoint=server.endpoint, spool_dir=tmp_path / "sp")
    )


async def listing(store: S3BlobStore) -> list[tuple[str, int]]:
    return sorted([(d, n) async for d, n, _ in store.iter_blobs()])


async def test_migrate_copies_everything_then_resumes_with_nothing_to_do(
    s3_server: S3Server, tmp_path: Path
) -> None:
    source = await filled(tmp_path / "local")
    target = s3_store(s3_server, tmp_path)
    try:
        # An earlier, interrupted run had copied one blob already.
        await target.put_stream(one(CONTENTS[2]))
        seen: list[str] = []
        report = await migrate(source, target, progress=lambda r: seen.append(r.line()))
        assert (report.total, report.copied, report.skipped, report.failed) == (4, 3, 1, [])
        assert report.total_bytes == sum(len(c) for c in CONTENTS)
        assert report.copied_bytes == report.total_bytes - len(CONTENTS[2])
        assert seen[-1].startswith("4/4 blobs (3 copied, 1 already there, 0 failed)")
        assert await listing(target) == sorted((sha(c), len(c)) for c in CONTENTS)
        for c in CONTENTS:
            assert b"".join([p async for p in target.open_range(sha(c))]) == c
        again = await migrate(source, target)
        assert (again.copied, again.skipped) == (0, 4)
    finally:
        await target.close()


async def test_a_rotten_source_blob_is_reported_not_copied(
    s3_server: S3Server, tmp_path: Path
) -> None:
    source = await filled(tmp_path / "local")
    rotten = sha(CONTENTS[1])
    source.path_of(rotten).write_bytes(b"ONE")  # same size, other bytes
    target = s3_store(s3_server, tmp_path)
    try:
        report: MigrationReport = await migrate(source, target)
        assert report.failed == [rotten]
        assert report.copied == 3
        assert rotten not in {d for d, _ in await listing(target)}
    finally:
        await target.close()


async def test_a_rotten_blob_in_an_s3_source_is_reported_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """S3 → local (a backup of the bucket): the S3 store hashes a whole-chunk read and
    raises BlobCorrupt; that aborted the whole run with a traceback."""
    use_test_credentials()
    server = S3Server()
    server.start()
    source = s3_store(server, tmp_path)
    try:
        for c in CONTENTS:
            await source.put_stream(one(c))
        server.faults(corrupt_gets=True)  # every GET body has a byte flipped
        target = LocalBlobStore(tmp_path / "backup")
        report = await migrate(source, target)
        nonempty = sorted(sha(c) for c in CONTENTS if c)
        assert sorted(report.failed) == nonempty
        assert report.copied == 1  # the empty blob: no GET, nothing to flip
        assert [d async for d, _, _ in target.iter_blobs()] == [sha(b"")]
        assert list((tmp_path / "sp").iterdir()) == []
    finally:
        server.stop()
        await source.close()


class Collected(LocalBlobStore):
    """A source whose collector deletes one blob between the listing and its copy."""

    def __init__(self, root: Path, victim: str) -> None:
        super().__init__(root)
        self.victim = victim

    def open_range(self, sha256: str, offset: int = 0, length: int | None = None) -> Any:
        if sha256 == self.victim:
            self.path_of(sha256).unlink()
        return super().open_range(sha256, offset, length)


async def test_a_blob_collected_during_the_run_is_counted_as_gone(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """README "Backup and restore" migrates a live install: the GC may delete a listed
    blob before it is copied. That aborted the run (BlobNotFound) and, with it, the
    copies still in flight."""
    await filled(tmp_path / "local")
    victim = sha(CONTENTS[2])
    source = Collected(tmp_path / "local", victim)
    target = s3_store(s3_server, tmp_path)
    try:
        report = await migrate(source, target)
        assert (report.copied, report.gone, report.failed) == (3, 1, [])
        assert "1 gone from the source" in report.line()
        assert victim not in {d for d, _ in await listing(target)}
        assert list((tmp_path / "sp").iterdir()) == []
    finally:
        await target.close()


async def test_a_chunk_over_the_single_put_limit_is_migrated_in_parts(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A local chunk over S3's 5 GiB single-PUT limit stopped the run (S3 refuses such a
    PUT). It now goes as a multipart upload streamed from the spool file; the limit is
    lowered here rather than writing 5 GiB."""
    mib = 1024 * 1024
    big = os.urandom(40 * mib + 3)
    source = LocalBlobStore(tmp_path / "local")
    await source.put_stream(one(big))
    bucket = f"mig{secrets.token_hex(5)}"
    s3_server.create_bucket(bucket)
    target = S3BlobStore(
        S3Options(
            bucket=bucket,
            endpoint=s3_server.endpoint,
            spool_dir=tmp_path / "sp",
            multipart_threshold=6 * mib,
            multipart_part_bytes=5 * mib,
        )
    )
    try:
        client = await target.client()
        tracemalloc.start()
        try:
            report = await migrate(source, target)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (report.copied, report.failed) == (1, [])
        # Spooling holds a 4 MiB buffer and a piece or two; never the whole chunk.
        assert peak < len(big) // 2, peak
        head = await client.head_object(Bucket=bucket, Key=target.key_of(sha(big)))
        assert head["ETag"].endswith('-9"')  # 8 parts of 5 MiB and the rest
        assert head["ContentLength"] == len(big)
        assert b"".join([p async for p in target.open_range(sha(big))]) == big
        assert (await migrate(source, target)).skipped == 1
    finally:
        await target.close()


def test_cairn_blobs_migrate_prints_progress(s3_server: S3Server, tmp_path: Path) -> None:
    import asyncio

    asyncio.run(filled(tmp_path / "local"))
    bucket = f"cli{secrets.token_hex(5)}"
    s3_server.create_bucket(bucket)
    env = {
        **os.environ,
        "CAIRN_S3_ENDPOINT": s3_server.endpoint,
        "CAIRN_DATA_DIR": str(tmp_path / "data"),
        "CAIRN_BLOB_STORE": f"file://{tmp_path / 'local'}",
    }
    cmd = [sys.executable, "-m", "bus.run.cli", "blobs", "migrate", "--to", f"s3://{bucket}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "4/4 blobs (4 copied, 0 already there, 0 failed)" in out
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0
    assert "4/4 blobs (0 copied, 4 already there, 0 failed)" in proc.stdout.decode()
    bad = [*cmd[:-1], "s3://no-such-bucket-x"]
    proc = subprocess.run(bad, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 1
    # The bucket --to names, not the server's CAIRN_BLOB_STORE (the source here), which the
    # message told the operator to check.
    err = proc.stderr.decode()
    assert "--to s3://no-such-bucket-x" in err and "does not exist" in err, err
    assert "CAIRN_BLOB_STORE" not in err, err
