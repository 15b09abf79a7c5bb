"""The cleanup on its own: chunk references followed from the event store, which blobs the
collector deletes, idempotency keys expiring, one run at a time, and the periodic run in
the handlers process. Real Postgres (events appended through the domain), real files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bus import maintenance as cleanup
from bus.actors.commandbus import CommandBus
from bus.blobs import references as chunk_refs
from bus.blobs.inline import InlineBlobStore
from bus.blobs.local import LocalBlobStore
from bus.blobs.s3 import S3BlobStore, S3Options
from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain.commands import (
    AbortUpload,
    CompleteUpload,
    CreateFile,
    DeleteFile,
    ExpireUpload,
    InitiateUpload,
    StoreChunk,
)
from domain.events import EventMeta
from tests.commands import decide_and_append
from tests.s3server import S3Server
from tests.system import start_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Event times far enough back that any grace in these tests has passed (computed at import:
# only ever compared with "now minus a minute or an hour").
LONG_AGO = datetime.now(UTC) - timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(
    store: PostgresEventStore, chunks: list[bytes], at: datetime = LONG_AGO
) -> tuple[str, list[dict[str, object]]]:
    """An upload (all chunks stored, not completed); returns its id and manifest."""
    uid = str(uuid.uuid4())
    size = len(chunks[0])
    await decide_and_append(
        store,
        InitiateUpload(
            aggregate_id=uid,
            caller="alice",
            at=at,
            file_name="f",
            file_size=size * len(chunks),
            chunk_size=size,
        ),
    )
    for i, c in enumerate(chunks):
        await decide_and_append(
            store,
            StoreChunk(aggregate_id=uid, caller="alice", at=at, index=i, size=size, sha256=sha(c)),
        )
    return uid, [{"sha256": sha(c), "size": len(c)} for c in chunks]


async def file_from(
    store: PostgresEventStore, uid: str, manifest: list[dict[str, object]], at: datetime = LONG_AGO
) -> str:
    fid = str(uuid.uuid4())
    await decide_and_append(
        store,
        CompleteUpload(aggregate_id=uid, caller="alice", at=at, file_id=fid, sha256="0" * 64),
    )
    await decide_and_append(
        store,
        CreateFile(
            aggregate_id=fid,
            caller="alice",
            at=at,
            owner="alice",
            name="f",
            size=sum(int(str(p["size"])) for p in manifest),
            content_type="application/octet-stream",
            sha256="0" * 64,
            manifest=manifest,
            upload_id=uid,
        ),
    )
    return fid


async def refs(pool: asyncpg.Pool) -> dict[tuple[str, str], bool]:
    """(sha256, stream) -> live?"""
    rows = await pool.fetch("SELECT sha256, stream_id, released_at FROM readmodel.chunk_refs")
    return {(r["sha256"], r["stream_id"]): r["released_at"] is None for r in rows}


async def test_chunk_refs_follow_the_event_store(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    a, b, c = b"a" * 8, b"b" * 8, b"c" * 8
    uid, manifest = await upload(event_store, [a, b])
    assert await refs(pool) == {}
    reached = await chunk_refs.catch_up(pool, event_store)
    assert reached == (await event_store.read_all(0, 1000))[-1].position
    assert await refs(pool) == {(sha(a), f"upload-{uid}"): True, (sha(b), f"upload-{uid}"): True}
    # Completing hands the chunks over to the file: the upload's references are released.
    fid = await file_from(event_store, uid, manifest)
    other, _ = await upload(event_store, [c])
    await chunk_refs.catch_up(pool, event_store, page=2)  # several pages, same outcome
    assert await refs(pool) == {
        (sha(a), f"upload-{uid}"): False,
        (sha(b), f"upload-{uid}"): False,
        (sha(a), f"file-{fid}"): True,
        (sha(b), f"file-{fid}"): True,
        (sha(c), f"upload-{other}"): True,
    }
    await decide_and_append(event_store, DeleteFile(aggregate_id=fid, caller="alice", at=now()))
    await decide_and_append(
        event_store, AbortUpload(aggregate_id=other, caller="alice", at=LONG_AGO)
    )
    await chunk_refs.catch_up(pool, event_store)
    assert not any((await refs(pool)).values())
    # Released times are the events' own: the deletion is recent, the abort is not.
    recent = await chunk_refs.still_needed(
        pool, [sha(a), sha(b), sha(c)], now() - timedelta(hours=1)
    )
    assert recent == {sha(a), sha(b)}
    # Catching up again changes nothing; a reset replays the whole log to the same table.
    before = await refs(pool)
    await chunk_refs.catch_up(pool, event_store)
    async with pool.acquire() as conn:
        await chunk_refs.reset(conn)
    await chunk_refs.catch_up(pool, event_store)
    assert await refs(pool) == before


async def put(blobs: LocalBlobStore, data: bytes, age: float) -> str:
    async def one() -> AsyncIterator[bytes]:
        yield data

    digest, _ = await blobs.put_stream(one())
    t = time.time() - age
    os.utime(blobs.path_of(digest), (t, t))
    return digest


async def test_collector_deletes_only_unreferenced_blobs_past_the_grace(
    settings: Settings, pool: asyncpg.Pool, event_store: PostgresEventStore, tmp_path: Path
) -> None:
    s = Settings(**{**settings.__dict__, "gc_grace": 60.0})
    blobs = LocalBlobStore(tmp_path / "gc-blobs")
    data = {name: name.encode() * 16 for name in ("kept", "also", "expired", "aborted", "stray")}
    old = {name: await put(blobs, d, age=7200) for name, d in data.items()}
    fresh = await put(blobs, b"fresh and unrecorded", age=0)

    live, manifest = await upload(event_store, [data["kept"], data["also"]])
    fid = await file_from(event_store, live, manifest)
    expired, _ = await upload(event_store, [data["expired"]])
    await decide_and_append(
        event_store, ExpireUpload(aggregate_id=expired, caller="alice", admin=True, at=now())
    )
    aborted, _ = await upload(event_store, [data["aborted"]])
    await decide_and_append(
        event_store, AbortUpload(aggregate_id=aborted, caller="alice", at=LONG_AGO)
    )

    deleted, freed = await cleanup.collect_garbage(s, pool, blobs, datetime.now(UTC))
    gone = {name for name, digest in old.items() if not blobs.path_of(digest).exists()}
    # Unreferenced ("stray") and released long ago ("aborted") go; a live file's chunks,
    # chunks released just now ("expired") and a fresh blob stay.
    assert gone == {"stray", "aborted"}
    assert (deleted, freed) == (2, len(data["stray"]) + len(data["aborted"]))
    assert blobs.path_of(fresh).exists()
    assert list((tmp_path / "gc-blobs" / "tmp").iterdir()) == []
    # Old released references are pruned; live ones and recent releases stay.
    streams = {stream for _, stream in await refs(pool)}
    assert f"upload-{aborted}" not in streams and f"upload-{expired}" in streams

    # A file deleted long enough ago frees its chunks the same way.
    await decide_and_append(event_store, DeleteFile(aggregate_id=fid, caller="alice", at=LONG_AGO))
    deleted, _ = await cleanup.collect_garbage(s, pool, blobs, datetime.now(UTC))
    assert deleted == 2
    assert not blobs.path_of(old["kept"]).exists() and not blobs.path_of(old["also"]).exists()
    assert blobs.path_of(old["expired"]).exists()


async def test_a_blob_rewritten_while_being_collected_is_put_back(tmp_path: Path) -> None:
    """The race the rename-first collection closes: a PUT of the same bytes renamed a fresh
    copy over the blob after it was listed as old."""
    blobs = LocalBlobStore(tmp_path / "b")
    path = blobs.path_of(sha(b"x"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")  # mtime now: "rewritten after the listing"
    assert blobs._collect(sha(b"x"), stored_before=time.time() - 60) is None
    assert path.read_bytes() == b"x"
    t = time.time() - 3600
    os.utime(path, (t, t))
    assert blobs._collect(sha(b"x"), stored_before=time.time() - 60) == 1
    assert not path.exists()
    assert blobs._collect(sha(b"x"), stored_before=time.time() - 60) is None


async def test_a_blob_the_collector_died_holding_is_put_back_by_the_sweep(
    tmp_path: Path,
) -> None:
    """SIGKILL between _collect's rename away and its judgement left the blob in tmp/,
    where the sweep (at start, a day later) deleted it: a blob a put had just rewritten
    (its StoreChunk maybe in flight) was lost. Now it is put back; one stored again since
    is left as it is."""
    blobs = LocalBlobStore(tmp_path / "b")
    lost, again = sha(b"lost"), sha(b"again")
    for name, data in ((lost, b"lost"), (again, b"again")):
        digest = await put(blobs, data, age=0)
        assert digest == name
        os.rename(blobs.path_of(name), tmp_path / "b" / "tmp" / f"gc-{name}-0a0b0c.part")
    fresh = await put(blobs, b"again", age=0)  # the same bytes, stored after the crash
    blobs.sweep_tmp()
    assert blobs.path_of(lost).read_bytes() == b"lost"
    assert blobs.path_of(fresh).read_bytes() == b"again"
    assert list((tmp_path / "b" / "tmp").iterdir()) == []
    # A collector whose blob a sweep puts back while it judges it keeps it (old as it is).
    t = time.time() - 3600
    os.utime(blobs.path_of(lost), (t, t))
    real_stat = os.stat

    def swept_meanwhile(path: Any, *args: Any, **kw: Any) -> Any:
        if Path(path).name.startswith("gc-"):
            blobs.sweep_tmp()
        return real_stat(path, *args, **kw)

    with pytest.MonkeyPatch.context() as m:
        m.setattr("bus.blobs.local.os.stat", swept_meanwhile)
        assert blobs._collect(lost, stored_before=time.time() - 60) is None
    assert blobs.path_of(lost).read_bytes() == b"lost"


async def test_the_collector_sweeps_leftovers_of_crashed_puts(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The start-up sweep keeps a day's leftovers; the collector's pass removes them once
    they are a day old, without waiting for another restart."""
    blobs = LocalBlobStore(tmp_path / "b")
    left = tmp_path / "b" / "tmp" / "0123abcd.part"
    left.write_bytes(b"x" * 1000)
    t = time.time() - 2 * 24 * 3600
    os.utime(left, (t, t))
    await cleanup.collect_garbage(settings, pool, blobs, datetime.now(UTC))
    assert not left.exists()


async def test_collector_on_s3_deletes_unreferenced_blobs_in_batches(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    tmp_path: Path,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same collector through the port on S3: listing with ListObjectsV2 and deleting
    with DeleteObjects (batches made small here, so several are sent)."""
    monkeypatch.setattr("bus.blobs.s3.DELETE_BATCH", 2)
    bucket = f"gc{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    blobs = S3BlobStore(S3Options(bucket=bucket, endpoint=s3_server.endpoint, spool_dir=tmp_path))
    try:

        async def put_s3(data: bytes) -> str:
            async def one() -> AsyncIterator[bytes]:
                yield data

            return (await blobs.put_stream(one()))[0]

        kept = [b"kept-one" * 3, b"kept-two" * 3]
        strays = [f"stray {i}".encode() for i in range(5)]
        for d in kept + strays:
            await put_s3(d)
        await upload(event_store, kept)
        s = Settings(**{**settings.__dict__, "gc_grace": 60.0})
        # S3 cannot backdate LastModified: judge "now" from an hour ahead instead.
        deleted, freed = await cleanup.collect_garbage(
            s, pool, blobs, datetime.now(UTC) + timedelta(hours=1)
        )
        assert (deleted, freed) == (len(strays), sum(len(d) for d in strays))
        assert sorted([d async for d, _, _ in blobs.iter_blobs()]) == sorted(sha(d) for d in kept)
        # Nothing judged young is deleted: with "now" as now, every blob is in its grace.
        await put_s3(b"young stray")
        assert await cleanup.collect_garbage(s, pool, blobs, datetime.now(UTC)) == (0, 0)
        assert await blobs.exists(sha(b"young stray"))
    finally:
        await blobs.close()


async def test_collector_on_s3_judges_age_on_s3s_own_clock(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, s3_server: S3Server
) -> None:
    """S3's clock two hours behind Cairn's (grace a minute): a chunk PUT a moment ago, its
    StoreChunk not yet appended, had a LastModified two hours before Cairn's `now` and was
    collected: an acknowledged upload lost its bytes. Age is now judged on S3's clock
    (LastModified against the Date of the same response), for the listing and for the
    re-check before DeleteObjects alike. Cairn's clock is injected; no sleeps."""
    bucket = f"gc{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    blobs = S3BlobStore(S3Options(bucket=bucket, endpoint=s3_server.endpoint, spool_dir=tmp_path))
    skew = 2 * 3600.0
    blobs.clock = lambda: time.time() + skew  # Cairn's clock, two hours ahead of S3's
    try:

        async def one() -> AsyncIterator[bytes]:
            yield b"acknowledged, StoreChunk still in flight"

        digest, _ = await blobs.put_stream(one())
        s = Settings(**{**settings.__dict__, "gc_grace": 60.0})
        cairn_now = datetime.fromtimestamp(blobs.clock(), UTC)
        [(_, _, stored_at)] = [b async for b in blobs.iter_blobs()]
        assert stored_at > blobs.clock() - 60  # young on Cairn's clock: stored just now
        assert await cleanup.collect_garbage(s, pool, blobs, cairn_now) == (0, 0)
        assert await blobs.exists(digest)
        # The re-check before deleting judges on the same clock.
        assert await blobs.delete_many([digest], stored_before=blobs.clock() - 60) == {}
        assert await blobs.exists(digest)
        # Once old on S3's clock too (Cairn's "now" another hour on), it goes.
        later = cairn_now + timedelta(hours=1)
        assert await cleanup.collect_garbage(s, pool, blobs, later) == (1, 40)
        assert not await blobs.exists(digest)
    finally:
        await blobs.close()


async def test_collector_on_the_inline_tier_judges_age_on_the_databases_clock(
    settings: Settings, pool: asyncpg.Pool, db_url: str, tmp_path: Path
) -> None:
    """A writer whose clock runs two hours behind (grace a minute): its inline blob's
    `stored_at` was its own clock, so a row put a moment ago, its StoreChunk not yet
    appended, looked two hours old to a collector on another host and was deleted: an
    acknowledged upload lost its bytes. `stored_at` is now the database's clock, and the
    collector (whose clock may be off too) judges ages on it, as the S3 store judges on
    S3's. Both clocks are injected; no sleeps."""
    skew = 2 * 3600.0
    writer = InlineBlobStore(LocalBlobStore(tmp_path / "w"), db_url, max_bytes=4096)
    writer.clock = lambda: time.time() - skew  # the writer's host, two hours behind
    collector = InlineBlobStore(LocalBlobStore(tmp_path / "c"), db_url, max_bytes=4096)
    try:

        async def one() -> AsyncIterator[bytes]:
            yield b"acknowledged, StoreChunk still in flight"

        digest, _ = await writer.put_stream(one())
        s = Settings(**{**settings.__dict__, "gc_grace": 60.0})
        for ahead in (0.0, skew):  # the collector's clock right, then two hours ahead
            collector.clock = lambda ahead=ahead: time.time() + ahead
            cairn_now = datetime.fromtimestamp(collector.clock(), UTC)
            [(_, _, stored_at)] = [b async for b in collector.iter_blobs()]
            assert stored_at > collector.clock() - 60  # young on the collector's clock
            assert await cleanup.collect_garbage(s, pool, collector, cairn_now) == (0, 0)
            # The re-check as it deletes judges on the same clock.
            stored_before = collector.clock() - 60
            assert await collector.delete_many([digest], stored_before=stored_before) == {}
            assert await collector.exists(digest)
        # Once old on the database's clock too (the collector's "now" an hour on), it goes.
        later = datetime.fromtimestamp(collector.clock() + 3600, UTC)
        assert await cleanup.collect_garbage(s, pool, collector, later) == (1, 40)
        assert not await collector.exists(digest)
    finally:
        await writer.close()
        await collector.close()


async def test_old_idempotency_keys_are_deleted_and_one_run_at_a_time(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    for key, age in (("old", timedelta(hours=25)), ("new", timedelta(hours=1))):
        await pool.execute(
            "INSERT INTO api.idempotency_keys (owner, key, request_target, token, created_at)"
            " VALUES ('alice', $1, 'POST /v1/uploads', $2, now() - $3::interval)",
            key,
            uuid.uuid4(),
            age,
        )
    blobs = LocalBlobStore(tmp_path / "blobs")
    # Nothing to expire in this database, so the bus is never used (and need not run).
    bus = CommandBus(settings)
    holder = await pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", cleanup.CLEANUP_LOCK)
        # The periodic run skips its turn while another process holds the lock...
        assert await cleanup.run_cleanup(settings, pool, bus, blobs, wait=False) is None
        # ...the admin's run waits for it.
        waiting = asyncio.create_task(cleanup.run_cleanup(settings, pool, bus, blobs, wait=True))

        async def blocked() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
            )

        await wait_until(blocked)
        assert not waiting.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", cleanup.CLEANUP_LOCK)
        report = await waiting
    finally:
        await pool.release(holder)
    assert report is not None and report.idempotency_keys_deleted == 1
    assert [r["key"] for r in await pool.fetch("SELECT key FROM api.idempotency_keys")] == ["new"]
    again = await cleanup.run_cleanup(settings, pool, bus, blobs, wait=False)
    assert again is not None and again.idempotency_keys_deleted == 0


@pytest.mark.timeout(120)
async def test_the_handlers_process_expires_stale_uploads_by_itself(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    fast = Settings(**{**settings.__dict__, "upload_ttl": 1.0, "cleanup_interval": 0.3})
    system = await start_system(fast, pool)
    try:
        async with system.client("alice") as c:
            r = await c.post("/v1/uploads", json={"file_name": "f", "file_size": 10})
            uid = r.json()["id"]

            async def expired() -> bool:
                got: httpx.Response = await c.get(f"/v1/uploads/{uid}")
                return bool(got.json()["status"] == "EXPIRED")

            await wait_until(expired, timeout=60, interval=0.2)
            assert (
                await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"x" * 10)
            ).status_code == 410
    finally:
        await system.shutdown()
    n = await pool.fetchval(
        "SELECT count(*) FROM eventstore.events WHERE stream_id = $1 AND event_type = 'UploadExpired'",
        f"upload-{uid}",
    )
    assert n == 1


async def test_a_newer_schema_event_makes_the_collector_wait_and_expiry_pass_it_by(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event of a newer schema version than this code reads (a rolling upgrade, or a
    rollback) may name chunks this code cannot see: the collector deletes nothing until a
    process that reads it runs (never a live chunk), and says why; expiry leaves that
    upload to the newer version and the rest of the run goes on."""
    from domain.events import NewEvent
    from domain.uploads.events import UploadChunkStored
    from projections.rebuild import rebuild

    known = UploadChunkStored.schema_version
    s = Settings(**{**settings.__dict__, "gc_grace": 60.0, "upload_ttl": 60.0})
    blobs = LocalBlobStore(tmp_path / "gc-newer")
    referenced = await put(blobs, b"named only by the newer event" * 4, age=7200)
    stray = await put(blobs, b"nobody names this one" * 4, age=7200)
    uid, _ = await upload(event_store, [b"c" * 8])
    await rebuild(pool, "uploads")  # its read-model row: a stale, active upload
    await event_store.append(
        f"upload-{uid}",
        2,
        [
            NewEvent(
                "UploadChunkStored",
                {
                    "index": 0,
                    "offset": 0,
                    "sha256": referenced,
                    "size": 116,
                    "at": LONG_AGO.isoformat(),
                },
                schema_version=known + 1,
            )
        ],
        EventMeta(occurred_at=LONG_AGO, owner="alice"),
    )

    # No upload to expire but the newer one: the bus is never needed.
    assert await cleanup.expire_stale_uploads(s, pool, None, now()) == 0  # type: ignore[arg-type]
    assert await cleanup.collect_garbage(s, pool, blobs, now()) == (0, 0)
    assert blobs.path_of(referenced).exists() and blobs.path_of(stray).exists()

    # Under the newer version, the reference is seen and only the stray blob goes.
    monkeypatch.setattr(UploadChunkStored, "schema_version", known + 1)
    monkeypatch.setattr(UploadChunkStored, "upcasters", {known: dict})
    deleted, _ = await cleanup.collect_garbage(s, pool, blobs, now())
    assert deleted == 1
    assert blobs.path_of(referenced).exists() and not blobs.path_of(stray).exists()
