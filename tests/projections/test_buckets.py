"""The buckets read model and the bucket queries, on real events in the real event store
(applied through `rebuild`, i.e. `apply_event`, the path the live projector takes too)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from domain.buckets.commands import CreateBucket, DeleteBucket, UpdateBucket
from projections import bucket_queries
from projections.rebuild import rebuild
from tests.projections.conftest import T0, Writer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_rows_follow_the_bucket_events(pool: asyncpg.Pool, writer: Writer) -> None:
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    await writer.run(CreateBucket(aggregate_id="pics", caller="alice", at=T0, description="d"))
    await writer.run(CreateBucket(aggregate_id="docs", caller="alice", at=T0))
    await writer.run(CreateBucket(aggregate_id="bobs", caller="bob", at=T0, public=True))
    await writer.run(UpdateBucket(aggregate_id="pics", caller="alice", at=t1, public=True))
    await writer.run(DeleteBucket(aggregate_id="docs", caller="alice", at=t1))
    assert await rebuild(pool, "buckets") == 5

    alice = await bucket_queries.list_buckets(pool, "alice", limit=10, after=None)
    assert [(b["name"], b["public"], b["description"]) for b in alice] == [("pics", True, "d")]
    assert alice[0]["updated_at"] == t1.isoformat()
    everyone = await bucket_queries.list_buckets(pool, None, limit=10, after=None)
    assert [b["name"] for b in everyone] == ["bobs", "pics"]
    assert [
        b["name"] for b in await bucket_queries.list_buckets(pool, None, limit=10, after="bobs")
    ] == ["pics"]

    # A deleted name created again (by someone else) reuses its row as the new bucket.
    await writer.run(CreateBucket(aggregate_id="docs", caller="bob", at=t2))
    await rebuild(pool, "buckets")
    row = await pool.fetchrow("SELECT * FROM readmodel.buckets WHERE name = 'docs'")
    assert row is not None
    assert (row["owner"], row["deleted_at"], row["created_at"], row["last_version"]) == (
        "bob",
        None,
        t2,
        3,
    )


async def test_usage_counts_the_owners_live_files_in_the_bucket(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    await writer.run(CreateBucket(aggregate_id="pics", caller="alice", at=T0))
    await rebuild(pool, "buckets")
    await writer.upload("alice", "a.bin", 100, bucket="pics")
    await writer.upload("alice", "b.bin", 50, bucket="pics")
    await writer.upload("alice", "c.bin", 7, bucket="default")  # not in the bucket
    await writer.upload("bob", "d.bin", 9, bucket="pics")  # not the owner's: not in it
    await rebuild(pool, "files")
    assert await bucket_queries.bucket_usage(pool, "pics", "alice") == {"objects": 2, "bytes": 150}
    assert await bucket_queries.owner_usage(pool, "alice") == {
        "buckets": 1,
        "objects": 2,
        "bytes": 150,
    }
    ids = await bucket_queries.object_ids(pool, "pics", "alice", 1)
    rest = await bucket_queries.object_ids(pool, "pics", "alice", 10, after=ids[0])
    assert len(ids) == 1 and len(rest) == 1 and ids[0] < rest[0]
