"""The orphan sweep: no file is left live in a bucket that is gone.

A write into a bucket checks the bucket, then sends its command (an object PUT, a move's
copy, an upload's or a fetch's file, a copy task's batch, which checks once per batch),
and a bucket's DELETE scans the bucket's files and then deletes it. Nothing orders the two
aggregates: a file whose command lands after the scan is created in a bucket that no
longer exists, or, the name taken again meanwhile, in someone else's (which does not list
it). It would stay live for good, counted against its owner's quota, reached only by its
id. The sweep deletes such files; it runs with the cleanup (bus/maintenance.py: every
CAIRN_CLEANUP_INTERVAL in the handlers process and at `POST /v1/admin/cleanup`, one run at
a time under the cleanup's advisory lock), so an orphan lives one interval at most.

Candidates come from the read models in one query (index files_bucket_created_idx,
migrations/0026): the live files of every deleted bucket name, and of every name taken
again by another user, those written before that bucket was made. Each is confirmed on
its file's and its bucket's own streams (the read models lag; the rule is
`domain.policies.orphaned`) and deleted by its owner's DeleteFile whose command id names
the file and the stream version it was judged at (`policies.delete_orphan`): a run
repeated, two at once, or one retried after a crash, send the same command for the same
state, which the event store applies once. The command carries `If-Match` of the content
judged, so a version written since (the owner made the bucket again and wrote the key) is
not deleted for it.

A file whose bucket name has no read-model row at all is not a candidate: the name never
existed (no API lets a file name such a bucket) or the buckets projection has not applied
its creation yet (not an orphan). A bucket made again by the same owner before the sweep
keeps the old files labelled with it: they are its files again (as if put there).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg

from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.config.logs import get_logger
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.buckets import BucketState
from domain.errors import DomainError, NewerSchema
from domain.files import FileState
from domain.registry import AGGREGATES

log = get_logger(__name__)

# Files examined per run (the next run goes on with the rest), and deleted at once.
MAX_ORPHANS_PER_RUN = 10_000
ORPHAN_CONCURRENCY = 16

# Live files of a deleted bucket name, and of a name another user has made since the
# file was written (`policies.orphaned`). Per bucket row (a LATERAL subquery, OFFSET 0
# keeping it one: as a join it read every live file, the planner guessing a deleted name
# holds as many as a live one), one range of files_bucket_created_idx: the name's files,
# or those older than its bucket (said as a row comparison, which only that index can
# take: `created_at < ...` alone made the planner walk files_created_idx, all the files
# ever made before the bucket).
_CANDIDATES = """
SELECT o.id FROM readmodel.buckets b CROSS JOIN LATERAL (
    SELECT f.id FROM readmodel.files f
    WHERE f.bucket = b.name AND f.deleted_at IS NULL OFFSET 0
) o
WHERE b.deleted_at IS NOT NULL
UNION ALL
SELECT o.id FROM readmodel.buckets b CROSS JOIN LATERAL (
    SELECT f.id FROM readmodel.files f
    WHERE f.bucket = b.name AND f.deleted_at IS NULL
      AND (f.bucket, f.created_at) < (b.name, b.created_at) AND f.owner <> b.owner OFFSET 0
) o
WHERE b.deleted_at IS NULL
LIMIT $1
"""


async def candidates(pool: asyncpg.Pool, limit: int = MAX_ORPHANS_PER_RUN) -> list[str]:
    """Ids of files the read models show live in a bucket that is gone (unconfirmed)."""
    return [str(r["id"]) for r in await pool.fetch(_CANDIDATES, limit)]


async def sweep_orphans(pool: asyncpg.Pool, bus: CommandBus, now: datetime) -> int:
    """Delete the files live in a bucket that is gone; return how many this run deleted
    (a deletion another run or process applied first is not counted)."""
    store = PostgresEventStore(pool)
    files, buckets = AGGREGATES["files"], AGGREGATES["buckets"]
    gate = asyncio.Semaphore(ORPHAN_CONCURRENCY)

    async def sweep(file_id: str) -> bool:
        async with gate:
            try:
                events = await store.read_stream(files.stream_id(file_id))
                file: FileState | None = files.fold(events)
                if file is None or file.deleted or file.bucket == "default":
                    return False
                bucket: BucketState | None = buckets.fold(
                    await store.read_stream(buckets.stream_id(file.bucket))
                )
            except NewerSchema as e:
                # Written by a newer version (an upgrade in progress, or a rollback): left
                # to a process that reads it.
                log.info("orphan not judged: newer schema", file_id=file_id, **e.details)
                return False
            if not policies.orphaned(file, bucket):
                return False  # the read model lagged: moved, deleted, or its bucket is back
            try:
                result = await bus.send(policies.delete_orphan(file, events[-1].version, now))
            except DomainError as e:  # written or deleted since it was read: not this one
                log.info("orphan not deleted", file_id=file_id, code=e.code)
                return False
            except BusUnavailable as e:  # the next run tries again (the same command id)
                log.warning("orphan deletion not confirmed", file_id=file_id, error=str(e))
                return False
            if result.applied:
                log.info("orphan deleted", file_id=file_id, bucket=file.bucket, owner=file.owner)
            return result.applied

    done = await asyncio.gather(*(sweep(i) for i in await candidates(pool)))
    return sum(done)
