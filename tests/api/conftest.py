from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from bus import db
from bus.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.settings import Settings
from tests.system import System, start_system


@pytest_asyncio.fixture(loop_scope="session")
async def system(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[System]:
    """A fresh whole system for one test (its own database and topics)."""
    s = await start_system(settings, pool)
    try:
        yield s
    finally:
        await s.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """One system for a whole module: tests isolate themselves by using distinct users."""
    name = f"m_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(pg_server.url)
    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "cairn_template"')
    await conn.close()
    url = f"{pg_server.url.rpartition('/')[0]}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="cairn-sys-"))
    settings = Settings(
        data_dir=tmp / "data",
        database_url=url,
        kafka_bootstrap=kafka_server.bootstrap,
        kafka_idempotence=False,
        kafka_fetch_max_wait_ms=10,
        kafka_partitions=4,
        topic_prefix=f"m{secrets.token_hex(5)}",
        blob_store=f"file://{tmp / 'blobs'}",
        jwt_secret="test-secret-" + "y" * 32,
        command_timeout=20.0,
        log_json=False,
    )
    pool = await db.create_pool(url, min_size=1, max_size=20)
    s = await start_system(settings, pool)
    try:
        yield s
    finally:
        await s.shutdown()
        await pool.close()
