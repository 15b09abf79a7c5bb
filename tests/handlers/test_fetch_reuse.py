"""When a first fetch of a URL takes the bytes of a completed one (handlers/fetch_reuse.py),
and when it downloads: another owner's fetch, another declared sha256, a refresh, and a
source older than the TTL or over the size limit are never reused. Against real origins,
Postgres and broker."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bus.blobs.factory import open_blob_store
from bus.store.eventstore import PostgresEventStore
from domain import fetches as f
from handlers.fetch_reuse import reusable_source
from tests.api.origins import origin_server, until
from tests.api.routes import test_fetch_objects
from tests.api.routes.test_fetches import content, listed_completed, post
from tests.system import System

# The fetch-into-a-key system of tests/api/routes/test_fetch_objects.py (one per module), and its
# bucket helper: these tests need the same settings.
osys = test_fetch_objects.osys
make_bucket = test_fetch_objects.make_bucket


async def completed(c: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    """Fetch `url` to its end, and until the read model (where a reuse looks) says so."""
    done = await until(c, (await post(c, url, **extra))["id"], "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED", done
    await listed_completed(c, done["id"])
    return done


async def test_a_first_fetch_into_a_key_reuses_the_bytes(osys: System) -> None:
    async with origin_server() as o, osys.client("fr-ann") as c:
        first = await completed(c, o.url("/range/a.bin"))
        other = await completed(c, o.url("/range/a.bin"), bucket=await make_bucket(c), key="a")
        assert other["id"] != first["id"] and other["file_id"] != first["file_id"]
        assert other["sha256"] == first["sha256"] == o.sha256
        assert await content(c, other["file_id"]) == o.data
        assert o.counts["/range/a.bin"] == 1


async def test_another_owners_fetch_is_not_reused(osys: System) -> None:
    async with (
        origin_server() as o,
        osys.client("fr-bob") as bob,
        osys.client("fr-cat") as cat,
    ):
        await completed(bob, o.url("/range/b.bin"))
        theirs = await completed(cat, o.url("/range/b.bin"))
        assert await content(cat, theirs["file_id"]) == o.data
        assert o.counts["/range/b.bin"] == 2


async def test_a_declared_sha256_other_than_the_sources_downloads(osys: System) -> None:
    async with origin_server() as o, osys.client("fr-dan") as c:
        old = await completed(c, o.url("/range/c.bin"))
        o.data = os.urandom(120_000)  # the origin publishes new content
        new = await completed(
            c, o.url("/range/c.bin"), bucket=await make_bucket(c), key="c", sha256=o.sha256
        )
        assert new["sha256"] == o.sha256 != old["sha256"]
        assert await content(c, new["file_id"]) == o.data
        assert o.counts["/range/c.bin"] == 2


async def test_a_refresh_downloads_even_into_a_new_key(osys: System) -> None:
    async with origin_server() as o, osys.client("fr-eve") as c:
        bucket = await make_bucket(c)
        await completed(c, o.url("/range/d.bin"))
        # generation 0 of (bucket, key) is reused; a refresh of it downloads
        await completed(c, o.url("/range/d.bin"), bucket=bucket, key="k")
        assert o.counts["/range/d.bin"] == 1
        await completed(c, o.url("/range/d.bin"), bucket=bucket, key="k", refresh=True)
        assert o.counts["/range/d.bin"] == 2


async def test_only_a_source_within_the_ttl_and_the_size_limit_is_reused(osys: System) -> None:
    async with origin_server() as o, osys.client("fr-fay") as c:
        source = await completed(c, o.url("/range/e.bin"))
        fresh = f.FetchState(
            id=str(uuid.uuid4()),
            owner="fr-fay",
            url=source["url"],
            generation=0,
            bucket="default",
            key="e",
            sha256=None,
            status=f.FetchStatus.IN_PROGRESS,
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        store = PostgresEventStore(osys.pool)
        blobs = open_blob_store(osys.settings.blobs_url, osys.settings)
        try:
            ttl, size = osys.settings.fetch_ttl, len(o.data)
            now = datetime.now(UTC)
            found = await reusable_source(osys.pool, store, blobs, fresh, now, ttl, size)
            assert found is not None and found.id == source["id"]
            later = now + timedelta(seconds=ttl + 60)
            assert await reusable_source(osys.pool, store, blobs, fresh, later, ttl, size) is None
            # nor one over the size limit (lowered since it was fetched)
            assert await reusable_source(osys.pool, store, blobs, fresh, now, ttl, size - 1) is None
        finally:
            await blobs.close()
