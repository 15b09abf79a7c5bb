"""README "Postgres for analysts" against a migrated database: every relation it names
exists, every read model in the catalogue is named there (a new table or view is
documented for analysts, not only in its COMMENT), the event log's columns are listed as
they are, and its example queries run as written on projected data."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from domain import policies
from projections.rebuild import rebuild
from tests.projections.conftest import T0, Writer, sha

pytestmark = pytest.mark.asyncio(loop_scope="session")

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Postgres for analysts\n")
    return text[start : text.index("\n## ", start + 1)]


async def relations(pool: asyncpg.Pool, schema: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p')",
        schema,
    )
    return {r["name"] for r in rows}


async def test_the_section_names_every_read_model_and_only_what_exists(
    pool: asyncpg.Pool,
) -> None:
    named = set(re.findall(r"`((?:readmodel|eventstore|blobs|public)\.\w+)`", section()))
    readmodel = await relations(pool, "readmodel")
    existing = readmodel | await relations(pool, "eventstore") | await relations(pool, "blobs")
    assert named - existing - {"public.cairn_migrations"} == set()
    assert readmodel - named == set()


async def test_the_event_log_columns_are_listed_as_they_are(pool: asyncpg.Pool) -> None:
    listed = re.search(r"`eventstore\.events`: the log \(([^)]*)\)", section())
    assert listed is not None
    names = {n.split()[0] for n in re.findall(r"`([^`]+)`", listed.group(1))}
    columns = await pool.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'eventstore' AND table_name = 'events'"
    )
    assert names == {r["column_name"] for r in columns}


async def test_the_example_queries_run(pool: asyncpg.Pool, writer: Writer) -> None:
    await writer.upload("alice", "plain.bin", 10, bucket="pics")
    await writer.run(
        policies.put_object(
            bucket="pics", key="docs/a.txt", owner="alice", size=3, sha256=sha("one"),
            manifest=[(sha("one"), 3)], content_type="text/plain", caller="alice", at=T0,
        )
    )  # fmt: skip
    for name in ("uploads", "files"):
        await rebuild(pool, name)
    blocks = re.findall(r"```sql\n(.*?)```", section(), re.S)
    statements = [s.strip() for b in blocks for s in b.split(";\n") if s.strip()]
    assert len(statements) >= 5
    results = {}
    async with pool.acquire() as conn:
        for sql in statements:
            results[sql] = await conn.fetch(sql)  # raises on any name that does not exist
    per_bucket = next(rows for sql, rows in results.items() if "AS objects" in sql)
    assert [(r["bucket"], r["objects"], r["files"]) for r in per_bucket] == [("pics", 1, 2)]
