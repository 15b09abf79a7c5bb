from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from bus.config.settings import Settings
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.quota import QUOTA
from tests.system import System, isolated_system, start_system


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
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def qsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """One system for a whole module with a quota of `QUOTA` bytes per owner (tests isolate
    themselves by using distinct users)."""
    async with isolated_system(pg_server.url, kafka_server.bootstrap, quota_bytes=QUOTA) as s:
        yield s
