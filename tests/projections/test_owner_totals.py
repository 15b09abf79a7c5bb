"""readmodel.owner_totals (migration 0025): each owner's live files and their bytes, kept by
a trigger on readmodel.files, equal at every commit to summing the live rows, whoever writes
them and however (inserts, upserts of a deleted row, replacements, deletes, owner changes,
a rebuild's DELETE)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import asyncpg

from projections.files import FilesProjection

AT = datetime(2026, 12, 7, tzinfo=UTC)
UPSERT = """
INSERT INTO readmodel.files (id, owner, name, size, content_type, sha256, bucket, chunk_count,
                             created_at, updated_at, last_version)
VALUES ($1, $2, 'f', $3, 'text/plain', '', 'default', 1, $4, $4, 1)
ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, size = EXCLUDED.size, deleted_at = NULL
"""


async def _tallies(conn: asyncpg.Connection) -> tuple[dict[str, tuple[int, int]], ...]:
    """(what the trigger kept, what summing the live rows gives), owners with nothing left
    counting as (0, 0) in both."""
    kept = {
        r["owner"]: (r["files"], r["bytes"])
        for r in await conn.fetch("SELECT owner, files, bytes FROM readmodel.owner_totals")
        if (r["files"], r["bytes"]) != (0, 0)
    }
    summed = {
        r["owner"]: (r["files"], r["bytes"])
        for r in await conn.fetch(
            "SELECT owner, count(*) AS files, sum(size)::bigint AS bytes FROM readmodel.files"
            " WHERE deleted_at IS NULL GROUP BY owner"
        )
    }
    return kept, summed


async def test_random_writes_of_the_files_rows_keep_the_totals_equal_to_the_sums(
    pool: asyncpg.Pool,
) -> None:
    rng = random.Random(25)
    owners = ["alice", "bob", "carol"]
    ids = [uuid.uuid4() for _ in range(12)]
    seen: set[str] = set()
    async with pool.acquire() as conn:
        for step in range(400):
            fid = rng.choice(ids)
            op = rng.choice(["upsert", "resize", "delete", "chown", "remove", "rename"])
            seen.add(op)
            if op == "upsert":  # created, or created again after a delete (or over a live row)
                await conn.execute(UPSERT, fid, rng.choice(owners), rng.randrange(0, 10**6), AT)
            elif op == "resize":  # replaced by a version of another size, deleted or not
                await conn.execute(
                    "UPDATE readmodel.files SET size = $2 WHERE id = $1", fid, rng.randrange(10**6)
                )
            elif op == "delete":
                await conn.execute(
                    "UPDATE readmodel.files SET deleted_at = $2 WHERE id = $1", fid, AT
                )
            elif op == "chown":  # the key taken by another user (FileCreated over a leftover)
                await conn.execute(
                    "UPDATE readmodel.files SET owner = $2, size = size + 1 WHERE id = $1",
                    fid,
                    rng.choice(owners),
                )
            elif op == "remove":  # a rebuild's DELETE
                await conn.execute("DELETE FROM readmodel.files WHERE id = $1", fid)
            else:  # a column the trigger does not watch
                await conn.execute("UPDATE readmodel.files SET name = 'g' WHERE id = $1", fid)
            kept, summed = await _tallies(conn)
            assert kept == summed, f"after step {step} ({op} of {fid})"
    assert seen == {"upsert", "resize", "delete", "chown", "remove", "rename"}
    assert summed  # something was live at the end, so the comparison compared totals


async def test_a_rebuild_empties_the_totals_with_the_rows(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for size in (10, 20, 30):
            await conn.execute(UPSERT, uuid.uuid4(), "dave", size, AT)
        assert (await _tallies(conn))[0]["dave"] == (3, 60)
        async with conn.transaction():
            await FilesProjection().reset(conn)
        kept, summed = await _tallies(conn)
        assert "dave" not in kept and "dave" not in summed


async def test_a_rolled_back_write_leaves_the_totals_as_they_were(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(UPSERT, uuid.uuid4(), "erin", 5, AT)
        tr = conn.transaction()
        await tr.start()
        await conn.execute(UPSERT, uuid.uuid4(), "erin", 7, AT)
        assert (await _tallies(conn))[0]["erin"] == (2, 12)
        await tr.rollback()
        assert (await _tallies(conn))[0]["erin"] == (1, 5)
