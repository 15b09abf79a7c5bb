"""Cleanup: expire stale uploads, delete orphaned files, collect unreferenced chunks,
forget old idempotency keys.

Run every CAIRN_CLEANUP_INTERVAL by the handlers process and on demand by
`POST /v1/admin/cleanup`. Only one run at a time across all processes: a session-level
Postgres advisory lock (CLEANUP_LOCK) is held for the whole run, so two runs never decide
about the same blobs concurrently (the periodic one skips its turn, the admin call waits).

1. Expiry. An upload is stale when nothing happened to it for CAIRN_UPLOAD_TTL, judged on
   its *last activity* (updated_at = time of its last event), not its creation. Candidates
   come from the uploads read model; each is confirmed against the event store (the read
   model may lag behind a chunk that just arrived) and expired by sending ExpireUpload
   through the command bus with the command id `expire-upload-<id>`, so repeated runs (or a
   run whose reply timed out) expire it once.
2. Orphans: files left live in a bucket that is gone (made by a write that raced the
   bucket's deletion) are deleted, see bus/orphans.py. Before the collection, so the
   chunks only they held are released (and collected once the grace has passed).
3. Garbage collection. The chunk-reference table is caught up from the event store first
   (see bus/blobs/references.py for why it is not Kafka-fed), then every blob older than
   CAIRN_GC_GRACE on disk is deleted unless a live reference or a reference released less
   than the grace ago holds it. The grace on the blob's mtime protects a chunk PUT whose
   bytes are durable but whose StoreChunk is still in flight (nothing references it yet).
   The store reports "stored at" on Cairn's clock: the S3 store moves LastModified by the
   skew it measures against S3's Date header, so a server clock that lags cannot make
   a fresh blob look old (bus/blobs/s3.py `_to_our_clock`); the inline tier stamps its
   rows with PostgreSQL's clock and moves them likewise (bus/blobs/inline.py).
   Then the store's leftovers of crashed puts older than a day are swept. An event of a
   newer schema version than this code reads (a rolling upgrade, or a rollback) stops the
   collection before it deletes anything (it may name chunks), until a process that reads
   it runs; expiry passes such an upload by.
4. Idempotency keys older than 24 hours are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.aio import sleep_unless_stopped
from bus.blobs import references as chunk_refs
from bus.blobs.factory import open_blob_store
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.orphans import sweep_orphans
from bus.store import idempotency
from bus.store.db import keeps_session_state
from bus.store.eventstore import PostgresEventStore
from domain import uploads
from domain.commands import ExpireUpload
from domain.errors import DomainError, NewerSchema
from domain.ports import BlobStore
from domain.uploads import LIVE, UploadState

log = get_logger(__name__)

# In the project's advisory lock range (727_0xx, see bus/store/relay.py).
CLEANUP_LOCK = 727_010
# How long the admin endpoint waits for a run in another process to finish.
ADMIN_LOCK_WAIT = timedelta(seconds=120)
# Uploads examined per run, and blobs looked up per query.
MAX_EXPIRE_PER_RUN = 10_000
EXPIRE_CONCURRENCY = 16
GC_BATCH = 1000


@dataclass
class CleanupReport:
    expired: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    idempotency_keys_deleted: int = 0
    orphans_deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class CleanupBusy(Exception):
    """Another process holds the cleanup lock for longer than we were willing to wait."""


def expire_command_id(upload_id: str) -> str:
    return f"expire-upload-{upload_id}"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def run_cleanup(
    settings: Settings,
    pool: asyncpg.Pool,
    bus: CommandBus,
    blobs: BlobStore,
    *,
    wait: bool = True,
) -> CleanupReport | None:
    """One full run. Returns None if `wait` is False and another run holds the lock."""
    async with pool.acquire() as conn:
        # Session-level settings end with the connection's return to the pool (marked, so
        # the pool resets it: bus/store/db.py), as does the lock if we forget to unlock.
        keeps_session_state(conn)
        if wait:
            try:
                await conn.execute(
                    f"SET lock_timeout = {int(ADMIN_LOCK_WAIT.total_seconds() * 1000)}"
                )
                await conn.execute("SELECT pg_advisory_lock($1)", CLEANUP_LOCK)
            except asyncpg.exceptions.LockNotAvailableError:
                raise CleanupBusy("another cleanup is running") from None
        elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK):
            return None
        try:
            now = datetime.now(UTC)
            report = CleanupReport()
            report.expired = await expire_stale_uploads(settings, pool, bus, now)
            report.orphans_deleted = await sweep_orphans(pool, bus, now)
            report.blobs_deleted, report.bytes_freed = await collect_garbage(
                settings, pool, blobs, now
            )
            report.idempotency_keys_deleted = await idempotency.expire(pool)
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK)
    log.info("cleanup done", **report.as_dict())
    return report


# ---- expiry ---------------------------------------------------------------------------


async def expire_stale_uploads(
    settings: Settings, pool: asyncpg.Pool, bus: CommandBus, now: datetime
) -> int:
    """Expire live uploads (receiving bytes, or partial ones that have them all) idle for
    the TTL; return how many this run expired."""
    cutoff = now - timedelta(seconds=settings.upload_ttl)
    rows = await pool.fetch(
        "SELECT id FROM readmodel.uploads WHERE status = ANY($1::text[]) AND updated_at < $2"
        " ORDER BY updated_at, id LIMIT $3",
        [s.value for s in LIVE],
        cutoff,
        MAX_EXPIRE_PER_RUN,
    )
    store = PostgresEventStore(pool)
    gate = asyncio.Semaphore(EXPIRE_CONCURRENCY)

    async def expire(upload_id: str) -> bool:
        async with gate:
            try:
                state: UploadState | None = uploads.AGGREGATE.fold(
                    await store.read_stream(uploads.AGGREGATE.stream_id(upload_id))
                )
            except NewerSchema as e:
                # Written by a newer version (an upgrade in progress, or a rollback): its
                # last activity cannot be read here; left to a process that reads it.
                log.info("upload not expired: newer schema", upload_id=upload_id, **e.details)
                return False
            # The event store is the authority on the last activity: the read model may
            # not show a chunk stored a moment ago.
            if state is None or state.status not in LIVE or _aware(state.updated_at) >= cutoff:
                return False
            try:
                result = await bus.send(
                    ExpireUpload(
                        aggregate_id=upload_id,
                        caller=state.owner,
                        admin=True,
                        at=now,
                        command_id=expire_command_id(upload_id),
                        idle_before=cutoff,
                    )
                )
            except DomainError as e:  # completed or aborted in the meantime
                log.info("upload not expired", upload_id=upload_id, code=e.code)
                return False
            except BusUnavailable as e:  # the next run tries again (same command id)
                log.warning("expiry not confirmed", upload_id=upload_id, error=str(e))
                return False
            return result.applied

    done = await asyncio.gather(*(expire(str(r["id"])) for r in rows))
    return sum(done)


# ---- garbage collection ---------------------------------------------------------------


async def collect_garbage(
    settings: Settings, pool: asyncpg.Pool, blobs: BlobStore, now: datetime
) -> tuple[int, int]:
    """Delete unreferenced blobs older than the grace; return (blobs deleted, bytes freed)."""
    # Every reference recorded so far, including what expiry just appended, must be in the
    # table before anything is judged unreferenced.
    try:
        await chunk_refs.catch_up(pool, PostgresEventStore(pool))
    except NewerSchema as e:
        # An event this code cannot read may name chunks: judging without it could delete
        # a live one. Nothing is collected until a process that reads it runs.
        log.warning(
            "garbage collection skipped: the event store holds an event of a newer schema"
            " version than this process reads (upgrade in progress?)",
            **e.details,
        )
        return 0, 0
    grace = timedelta(seconds=settings.gc_grace)
    cutoff = now - grace
    deleted = freed = 0
    batch: list[str] = []

    async def sweep(shas: list[str]) -> None:
        nonlocal deleted, freed
        keep = await chunk_refs.still_needed(pool, shas, cutoff)
        # The store re-checks "stored before the cutoff" as it deletes: a put of the same
        # bytes since the listing keeps its blob.
        gone = await blobs.delete_many(
            [s for s in shas if s not in keep], stored_before=cutoff.timestamp()
        )
        deleted += len(gone)
        freed += sum(gone.values())

    async for sha, _size, stored_at in blobs.iter_blobs():
        if stored_at >= cutoff.timestamp():
            continue  # young: may belong to a chunk whose command is still in flight
        batch.append(sha)
        if len(batch) >= GC_BATCH:
            await sweep(batch)
            batch = []
    if batch:
        await sweep(batch)
    await chunk_refs.prune(pool, cutoff)
    # What puts cut off by a crash left behind (temp and spool files; blobs this collector
    # had renamed away): removed at every process start too, but only once a day old, so a
    # process restarted right after the crash would otherwise keep them until its next
    # restart, however long that is.
    swept = await blobs.sweep()
    if swept:
        log.info("leftovers of failed puts removed", count=swept)
    return deleted, freed


# ---- the periodic task ----------------------------------------------------------------


async def run_periodically(
    settings: Settings,
    pool: asyncpg.Pool,
    bus: CommandBus,
    stop: asyncio.Event,
    blobs: BlobStore | None = None,
) -> None:
    """Run the cleanup every `cleanup_interval` seconds until `stop` is set.

    A failed run is logged and retried at the next tick; a run skipped because another
    process holds the lock is simply that process's turn."""
    blobs = blobs or open_blob_store(settings.blobs_url, settings)
    while not stop.is_set():
        if await sleep_unless_stopped(stop, settings.cleanup_interval):
            return
        try:
            await run_cleanup(settings, pool, bus, blobs, wait=False)
        except Exception:
            log.exception("cleanup run failed")
