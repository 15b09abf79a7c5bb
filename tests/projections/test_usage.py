"""projections/usage.py quota reservations on the real PostgreSQL: one owner's checks are
decided one after another, each sees what the others hold, a hold for a file counts until
the files read model has it, and objects (files without an upload) count."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bus.store.eventstore import PostgresEventStore
from domain.commands import CreateFile
from projections.rebuild import rebuild
from projections.usage import release, reserve, storage_used
from tests.projections.conftest import T0, Writer, sha

QUOTA = 100_000


async def _file(writer: Writer, owner: str, size: int, file_id: str) -> None:
    """A file made without an upload (as an object is), in the files read model (filled by
    `rebuild`, the live projector's apply path)."""
    await writer.run(
        CreateFile(
            aggregate_id=file_id,
            caller=owner,
            at=T0,
            owner=owner,
            name="o",
            size=size,
            content_type="x/y",
            sha256=sha(file_id),
            manifest=[{"sha256": sha(file_id), "size": size}],
            bucket="default",
        )
    )
    await rebuild(writer.store.pool, "files")


async def test_concurrent_reservations_never_pass_together(
    event_store: PostgresEventStore,
) -> None:
    got = await asyncio.gather(*[reserve(event_store, "u1", QUOTA, 30_000) for _ in range(10)])
    held = [rid for rid, details, _ in got if rid is not None]
    refused = [details for rid, details, _ in got if rid is None]
    assert len(held) == 3 and len(refused) == 7
    assert all(d == {"quota": QUOTA, "used": 90_000, "requested": 30_000} for d in refused)
    assert await storage_used(event_store, "u1") == 90_000
    assert await storage_used(event_store, "someone else") == 0
    for rid in held:
        await release(event_store.pool, rid)
    assert await storage_used(event_store, "u1") == 0


async def test_a_hold_for_a_file_counts_until_the_file_is_listed(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    pool = event_store.pool
    rid, details, used = await reserve(event_store, "u2", QUOTA, 60_000)
    assert rid is not None and details is None and used == 0
    fid = str(uuid.uuid4())
    await release(pool, rid, fid)  # the file is made, not listed yet
    assert await storage_used(event_store, "u2") == 60_000
    rid2, details, _ = await reserve(event_store, "u2", QUOTA, 50_000)
    assert rid2 is None and details == {"quota": QUOTA, "used": 60_000, "requested": 50_000}
    await _file(writer, "u2", 60_000, fid)  # listed: it counts as a file, once
    assert await storage_used(event_store, "u2") == 60_000
    rid3, details, _ = await reserve(event_store, "u2", QUOTA, 40_000)
    assert rid3 is not None and details is None


async def test_resize_counts_the_new_size_once_and_keeps_the_old_when_refused(
    event_store: PostgresEventStore,
) -> None:
    rid, _, _ = await reserve(event_store, "u3", QUOTA, 0)
    assert rid is not None
    same, details, _ = await reserve(event_store, "u3", QUOTA, 70_000, resize=rid)
    assert same == rid and details is None
    assert await storage_used(event_store, "u3") == 70_000
    same, details, _ = await reserve(event_store, "u3", QUOTA, 100_001, resize=rid)
    assert same is None and details is not None and details["used"] == 0
    assert await storage_used(event_store, "u3") == 70_000


@pytest.mark.parametrize("size", [1, 40_000])
async def test_files_made_without_an_upload_count(
    event_store: PostgresEventStore, writer: Writer, size: int
) -> None:
    await _file(writer, "u4", size, str(uuid.uuid4()))
    assert await storage_used(event_store, "u4") == size
