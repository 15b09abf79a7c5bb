"""The schema documents itself: every relation and column of Cairn's schemas has a COMMENT.

Analysts meet Cairn in psql (`\\d+`), so README promises a comment on every table, view
and column; this reads the catalogue (pg_description) of a migrated database, so a new
migration without comments fails here, naming what it left out.
"""

from __future__ import annotations

import asyncpg

SCHEMAS = ["eventstore", "readmodel", "api", "work", "blobs"]


async def test_every_relation_and_column_has_a_comment(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """
        SELECT n.nspname || '.' || c.relname AS relation, c.relkind,
               obj_description(c.oid, 'pg_class') AS comment
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname = ANY($1::text[])
               OR (n.nspname = 'public' AND c.relname = 'cairn_migrations'))
          AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
        """,
        SCHEMAS,
    )
    relations = {r["relation"] for r in rows}
    assert {"eventstore.events", "readmodel.uploads", "public.cairn_migrations"} <= relations
    assert [r["relation"] for r in rows if not r["comment"]] == []

    columns = await pool.fetch(
        """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname AS col,
               col_description(c.oid, a.attnum) AS comment
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname = ANY($1::text[])
               OR (n.nspname = 'public' AND c.relname = 'cairn_migrations'))
          AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1
        """,
        SCHEMAS,
    )
    assert len(columns) > 50
    assert [r["col"] for r in columns if not r["comment"]] == []

    schemas = await pool.fetch(
        "SELECT nspname, obj_description(oid, 'pg_namespace') AS comment"
        " FROM pg_namespace WHERE nspname = ANY($1::text[])",
        SCHEMAS,
    )
    assert sorted(r["nspname"] for r in schemas) == sorted(SCHEMAS)
    assert [r["nspname"] for r in schemas if not r["comment"]] == []
