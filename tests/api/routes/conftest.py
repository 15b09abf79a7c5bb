"""Fixtures the route tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api.routes import objects as objects_route
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.system import System, isolated_system


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_chunks_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """A system for one test module whose uploads default to 64 KiB chunks: a task's
    archive or extracted file spans several stored chunks."""
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, default_chunk_size=64 * 1024
    ) as s:
        yield s


@pytest.fixture
def object_body_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each object PUT body that began to be read (its `ingest` call's arguments), in
    order: a refusal "before the body is read" leaves this empty."""
    reads: list[object] = []
    ingest = objects_route.ingest

    async def noted_ingest(*args: Any, **kw: Any) -> Any:
        reads.append(args)
        return await ingest(*args, **kw)

    monkeypatch.setattr(objects_route, "ingest", noted_ingest)
    return reads
