"""Postgres connections and schema migrations.

Migrations are plain SQL files in `migrations/`, applied in name order, each once, under
an advisory lock so that several processes starting together do not race.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_MIGRATION_LOCK = 727_001


async def _init_conn(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(url: str, min_size: int = 1, max_size: int = 10, **kw: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_conn, **kw
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_conn(conn)
    return conn


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS public.cairn_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM public.cairn_migrations")}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO public.cairn_migrations (name) VALUES ($1)", path.name
                    )
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if missing; return its URL (tests, embedded)."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"
