"""API keys as an alternative to JWTs, and the admin-only projection rebuild endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest_asyncio

from bus.config.settings import ApiKey, Settings
from tests.api.documented import assert_documented
from tests.system import System, start_system, wait_until


@pytest_asyncio.fixture(loop_scope="session")
async def keyed(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[System]:
    keys = (ApiKey("k-alice-123", "alice"), ApiKey("k-root-456", "root", admin=True))
    s = await start_system(Settings(**{**settings.__dict__, "api_keys": keys}), pool)
    try:
        yield s
    finally:
        await s.shutdown()


async def test_api_keys_and_rebuild(keyed: System) -> None:
    alice = httpx.AsyncClient(base_url=keyed.url, headers={"X-API-Key": "k-alice-123"}, timeout=30)
    root = httpx.AsyncClient(base_url=keyed.url, headers={"X-API-Key": "k-root-456"}, timeout=30)
    async with alice, root, keyed.client("alice") as alice_jwt:
        data = os.urandom(50)
        r = await alice.post(
            "/v1/uploads", json={"file_name": "k", "file_size": 50, "chunk_size": 50}
        )
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        assert (await alice.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
        assert (await alice.post(f"/v1/uploads/{uid}/complete")).status_code == 200
        # the same user through a JWT sees the same upload: keys map to users, not to data
        assert (await alice_jwt.get(f"/v1/uploads/{uid}")).status_code == 200

        async def listed() -> bool:
            items = (await alice.get("/v1/uploads")).json()["items"]
            return any(i["id"] == uid and i["status"] == "COMPLETED" for i in items)

        await wait_until(listed)

        rebuild = "/v1/admin/projections/{name}/rebuild"
        r = await alice.post("/v1/admin/projections/uploads/rebuild")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        await assert_documented(alice, "post", rebuild, r)
        r = await root.post("/v1/admin/projections/nope/rebuild")
        assert r.status_code == 404 and r.json()["error"]["code"] == "projection_not_found"
        await assert_documented(root, "post", rebuild, r)

        # damage the read model, then rebuild it from the event store
        await keyed.pool.execute(
            "UPDATE readmodel.uploads SET status = 'FAILED', bytes_received = 0"
        )
        r = await root.post("/v1/admin/projections/uploads/rebuild")
        assert r.status_code == 200, r.text
        assert r.json()["events_applied"] >= 3 and r.json()["events_skipped"] == 0
        await assert_documented(root, "post", rebuild, r)
        items = (await alice.get("/v1/uploads")).json()["items"]
        row = next(i for i in items if i["id"] == uid)
        assert row["status"] == "COMPLETED" and row["bytes_received"] == 50
