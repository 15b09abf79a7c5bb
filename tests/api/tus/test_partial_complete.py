"""A tus partial upload (Upload-Concat: partial) that has all its bytes is finished, as
tusd has it: PARTIAL_COMPLETE, no file of its own, not active. It stayed IN_PROGRESS and
counted as active (stats, the `status` filter) until it expired, so four finished parts
concatenated into one file were four active uploads for a day. Its bytes stay usable in
final concatenations until it is terminated or expires, and it still expires."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from tests.api.tus.test_controller import TUS, create, md, patch, upload_id
from tests.system import System, start_system, wait_until


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def short(shared_system: System) -> AsyncIterator[System]:
    """A second API process of this module's system with a 2 s upload TTL (its cleanup
    expires what is idle for 2 s: only this module's uploads live in its database)."""
    settings = dataclasses.replace(shared_system.settings, upload_ttl=2.0)
    s = await start_system(settings, shared_system.pool, kinds=("api",))
    try:
        yield s
    finally:
        await s.shutdown()


async def _status(c: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await c.get(f"/v1/uploads/{upload_id(url)}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _listed_ids(c: httpx.AsyncClient, status: str) -> tuple[set[str], int]:
    r = await c.get("/v1/uploads", params={"status": status, "limit": 1000})
    assert r.status_code == 200, r.text
    return {u["id"] for u in r.json()["items"]}, int(r.headers["X-Total-Count"])


async def test_finished_partials_are_partial_complete_not_active(shared_system: System) -> None:
    async with shared_system.client("pc-alice") as c:
        # Four parts finished four ways: PATCHed to their length, created with every byte,
        # a deferred length declared at the offset, and an empty one (finished at once).
        p1 = await create(c, 5, Upload_Concat="partial")
        assert (await patch(c, p1, 0, b"11111")).status_code == 204
        p2 = await create(c, 7, Upload_Concat="partial", body=b"2222222")
        p3 = await create(c, None, Upload_Concat="partial")
        assert (await patch(c, p3, 0, b"333")).status_code == 204
        assert (await _status(c, p3))["status"] == "IN_PROGRESS"
        assert (await patch(c, p3, 3, b"", Upload_Length="3")).status_code == 204
        p4 = await create(c, 0, Upload_Concat="partial")
        parts = (p1, p2, p3, p4)
        # And one still receiving.
        busy = await create(c, 10, Upload_Concat="partial")
        assert (await patch(c, busy, 0, b"4444")).status_code == 204

        for url in parts:
            up = await _status(c, url)
            assert up["status"] == "PARTIAL_COMPLETE", up
            assert up["file_id"] is None and up["partial"] and up["progress"] == 100.0
            assert up["eta_seconds"] is None
            # Still a live tus resource: HEAD answers with its expiry, an empty PATCH at
            # its length is a no-op, a byte more goes past its length.
            h = await c.head(url, headers=TUS)
            assert h.status_code == 200 and h.headers["upload-concat"] == "partial"
            assert h.headers["upload-offset"] == h.headers["upload-length"]
            assert "upload-expires" in h.headers
            length = int(h.headers["upload-length"])
            r = await patch(c, url, length, b"")
            assert r.status_code == 204 and r.headers["upload-offset"] == str(length)
            r = await patch(c, url, length, b"x")
            assert r.status_code == 413 and r.json()["error"]["code"] == "length_exceeded"
        assert (await _status(c, busy))["status"] == "IN_PROGRESS"

        # The read model: the `status` filter takes the new status (any case) and the
        # stats count the parts under it, not as active.
        ids = {upload_id(u) for u in parts}

        async def listed() -> bool:
            return await _listed_ids(c, "partial_complete") == (ids, 4)

        await wait_until(listed)
        assert await _listed_ids(c, "IN_PROGRESS") == ({upload_id(busy)}, 1)

        async def stats() -> dict[str, Any] | None:
            s: dict[str, Any] = (await c.get("/v1/uploads/stats")).json()
            return s if s["by_status"]["PARTIAL_COMPLETE"] == 4 else None

        s = await wait_until(stats)
        assert s["active"] == 1 and s["by_status"]["IN_PROGRESS"] == 1
        assert s["bytes_pending"] == 6 and s["average_progress"] == 40.0
        assert s["bytes_received"] == 5 + 7 + 3 + 4

        # Concatenated: one file of their bytes; the parts stay as they are, reusable.
        r = await c.post(
            "/v1/tus",
            headers={
                **TUS,
                "Upload-Concat": "final;" + " ".join(parts),
                "Upload-Metadata": md(filename="joined.bin"),
            },
        )
        assert r.status_code == 201, r.text
        final = await _status(c, r.headers["location"])
        assert final["status"] == "COMPLETED" and final["file_id"]
        got = await c.get(f"/v1/files/{final['file_id']}/content")
        assert got.content == b"11111" + b"2222222" + b"333"
        for url in parts:
            assert (await _status(c, url))["status"] == "PARTIAL_COMPLETE"
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{p2} {p1}"})
        assert r.status_code == 201, r.text

        async def counted() -> dict[str, Any] | None:
            s: dict[str, Any] = (await c.get("/v1/uploads/stats")).json()
            n = s["by_status"]
            return s if (n["COMPLETED"], n["PARTIAL_COMPLETE"]) == (2, 4) else None

        assert (await wait_until(counted))["active"] == 1

        # Terminated, a finished part is aborted like an unfinished one.
        assert (await c.delete(p1, headers=TUS)).status_code == 204
        assert (await c.head(p1, headers=TUS)).status_code == 404
        assert (await _status(c, p1))["status"] == "ABORTED"
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{p1}"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_concat_part"


async def test_a_finished_partial_still_expires_by_the_sweep(
    shared_system: System, short: System
) -> None:
    data = os.urandom(3000)
    async with (
        shared_system.client("pc-bob") as c,
        short.client("pc-root", admin=True) as root,
    ):
        part = await create(c, len(data), Upload_Concat="partial", body=data)
        assert (await _status(c, part))["status"] == "PARTIAL_COMPLETE"
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{part}"})
        assert r.status_code == 201, r.text
        file_id = (await _status(c, r.headers["location"]))["file_id"]

        # The cleanup of the API process with a 2 s TTL (not a HEAD, which expires an
        # upload by itself) expires it once it has been idle that long.
        async def swept() -> bool:
            r = await root.post("/v1/admin/cleanup")
            assert r.status_code == 200, r.text
            return (await _status(c, part))["status"] == "EXPIRED"

        await wait_until(swept, timeout=30, interval=0.5)
        assert (await c.head(part, headers=TUS)).status_code == 410
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{part}"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_concat_part"
        # The final's file holds the part's bytes: they outlive the part.
        got = await c.get(f"/v1/files/{file_id}/content")
        assert got.status_code == 200 and got.content == data

        async def not_listed() -> bool:
            return await _listed_ids(c, "PARTIAL_COMPLETE") == (set(), 0)

        await wait_until(not_listed)
