"""The orphan sweep's query (bus/orphans.py `candidates`) does not read every live file:
it runs every cleanup interval, and a deployment's files are many more than its buckets.
Each bucket row is one range of files_bucket_created_idx (migrations/0026): a deleted
name's files, or those of a taken name older than its bucket."""

from __future__ import annotations

import re

import asyncpg

from bus.orphans import candidates
from tests.plans import explaining_pool

_FILES = """
INSERT INTO readmodel.files (id, owner, name, size, content_type, sha256, bucket,
                             chunk_count, created_at, updated_at, last_version)
SELECT gen_random_uuid(), $1, 'f' || i, 1, 'text/plain', repeat('0', 64), $2, 1,
       $3::text::timestamptz, $3::text::timestamptz, 1
FROM generate_series(1, $4) AS i
"""

_BUCKET = """
INSERT INTO readmodel.buckets (name, owner, public, created_at, updated_at, deleted_at,
                               last_version)
VALUES ($1, $2, false, $3::text::timestamptz, $3::text::timestamptz, $4::text::timestamptz, 1)
"""


async def test_the_candidates_are_found_by_index_not_by_reading_every_file(db_url: str) -> None:
    async with explaining_pool(db_url) as (pool, plans):
        conn: asyncpg.Connection
        async with pool.acquire() as conn:
            # Live buckets holding many files, one name deleted, one taken by someone else.
            for i in range(4):
                await conn.execute(_BUCKET, f"big-{i}", "ann", "2026-01-02", None)
                await conn.execute(_FILES, "ann", f"big-{i}", "2026-01-03", 5000)
            await conn.execute(_BUCKET, "gone", "ann", "2026-01-02", "2026-01-04")
            await conn.execute(_FILES, "ann", "gone", "2026-01-03", 2)
            await conn.execute(_BUCKET, "taken", "bob", "2026-01-05", None)
            await conn.execute(_FILES, "ann", "taken", "2026-01-03", 3)  # before bob's
            await conn.execute(_FILES, "bob", "taken", "2026-01-06", 4)  # bob's own
            await conn.execute(_FILES, "ann", "default", "2026-01-03", 5000)
            await conn.execute("ANALYZE readmodel.files")
            await conn.execute("ANALYZE readmodel.buckets")
        plans.clear()
        found = await candidates(pool)
        assert len(found) == 2 + 3
        ran = plans.of("SELECT o.id FROM readmodel.buckets b")
        assert ran, "auto_explain must show the query"
        for plan in ran:
            # Neither every live file (a sequential scan), nor every file made before a
            # bucket (files_created_idx), nor a range it then filters by the hundred.
            assert not re.search(r"Seq Scan on files\b", plan), plan
            assert "files_created_idx" not in plan, plan
            removed = re.findall(r"Rows Removed by (?:Filter|Index Recheck): (\d+)", plan)
            assert all(int(n) < 100 for n in removed), plan
