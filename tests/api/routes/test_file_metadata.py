"""PATCH /v1/files/{id} (rename, move between buckets, user metadata) and the list filters
of GET /v1/files, through the whole system. Every change is one FileUpdated event; bad input
is a 4xx that records nothing; another user's file or bucket is 404 like a missing one.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.answers import user
from tests.api.routes.test_buckets import assert_error, bname, put_file
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def file_events(pool: asyncpg.Pool, fid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
        f"file-{fid}",
    )
    return [r["event_type"] for r in rows]


async def row(pool: asyncpg.Pool, fid: str) -> dict[str, Any] | None:
    r = await pool.fetchrow(
        "SELECT name, bucket, metadata FROM readmodel.files WHERE id = $1::uuid", fid
    )
    return dict(r) if r is not None else None


async def test_rename_move_and_metadata(shared_system: System) -> None:
    me, pics = user(), bname()
    pool = shared_system.pool
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": pics})).status_code == 201
        fid = await put_file(c, "default", b"hello")

        r = await c.patch(f"/v1/files/{fid}", json={"name": "hello.txt"})
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["bucket"]) == ("hello.txt", "default")

        r = await c.patch(f"/v1/files/{fid}", json={"bucket": pics, "metadata": {"k": "ü"}})
        assert r.status_code == 200, r.text
        assert (r.json()["bucket"], r.json()["metadata"]) == (pics, {"k": "ü"})
        assert (await c.get(f"/v1/files/{fid}")).json()["name"] == "hello.txt"
        # The same values again: nothing recorded.
        assert (await c.patch(f"/v1/files/{fid}", json={"bucket": pics})).status_code == 200
        assert await file_events(pool, fid) == ["FileCreated", "FileUpdated", "FileUpdated"]

        async def projected() -> bool:
            want = {"name": "hello.txt", "bucket": pics, "metadata": {"k": "ü"}}
            return await row(pool, fid) == want

        await wait_until(projected)
        usage = (await c.get(f"/v1/buckets/{pics}")).json()["usage"]
        assert usage == {"objects": 1, "bytes": 5}
        r = await c.get("/v1/files", params={"bucket": pics})
        assert [f["id"] for f in r.json()["items"]] == [fid]

        # Out of every bucket again.
        r = await c.patch(f"/v1/files/{fid}", json={"bucket": "default", "metadata": {}})
        assert (r.json()["bucket"], r.json()["metadata"]) == ("default", {})


async def test_moves_into_buckets_not_the_owners_are_404(shared_system: System) -> None:
    me, them = user(), user()
    private, public = bname(), bname()
    async with shared_system.client(them) as o:
        assert (await o.post("/v1/buckets", json={"name": private})).status_code == 201
        assert (
            await o.post("/v1/buckets", json={"name": public, "public": True})
        ).status_code == 201
        their_file = await put_file(o, "default", b"theirs")
    async with shared_system.client(me) as c:
        fid = await put_file(c, "default", b"mine")
        for target in (private, public, bname(), "Not_Valid"):
            r = await c.patch(f"/v1/files/{fid}", json={"bucket": target})
            # Each answer is exactly a missing bucket's: it names only what was asked for.
            error = assert_error(r, 404, "bucket_not_found")
            assert (error["message"], error["details"]) == (
                f"no such bucket: {target!r}",
                {"name": target},
            ), error
        # Someone else's file: 404 like a missing one.
        assert_error(
            await c.patch(f"/v1/files/{their_file}", json={"name": "x"}), 404, "file_not_found"
        )
        assert_error(
            await c.patch(f"/v1/files/{secrets.token_hex(4)}", json={"name": "x"}),
            404,
            "file_not_found",
        )
    assert await file_events(shared_system.pool, fid) == ["FileCreated"]
    assert await file_events(shared_system.pool, their_file) == ["FileCreated"]
    # An admin may move a file, but only into its owner's buckets.
    async with shared_system.client("root", admin=True) as a:
        r = await a.patch(f"/v1/files/{their_file}", json={"bucket": private})
        assert r.status_code == 200 and r.json()["bucket"] == private
        assert_error(
            await a.patch(f"/v1/files/{fid}", json={"bucket": private}), 404, "bucket_not_found"
        )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "a/b"}, "invalid_name"),
        ({"name": ".."}, "invalid_name"),
        ({"metadata": {"k": "v" * 8000, "k2": "v" * 500}}, "invalid_metadata"),
        ({"metadata": {"k": 1}}, "validation_error"),
        ({"metadata": "text"}, "validation_error"),
        ({"size": 3}, "validation_error"),
        ({"name": 5}, "validation_error"),
        # Too big for one command on the bus: was a 503 (the broker refused it).
        ({"metadata": {f"k{i}": "v" * 8000 for i in range(600)}}, "request_too_large"),
    ],
)
async def test_bad_updates_are_4xx_and_record_nothing(
    shared_system: System, body: dict[str, Any], code: str
) -> None:
    async with shared_system.client(user()) as c:
        fid = await put_file(c, "default", b"data")
        assert_error(await c.patch(f"/v1/files/{fid}", json=body), 400, code)
        assert (await c.get(f"/v1/files/{fid}")).json()["name"] == "f.bin"
    assert await file_events(shared_system.pool, fid) == ["FileCreated"]


async def test_list_filters_by_created_range(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        first = await put_file(c, "default", b"1")
        created = datetime.fromisoformat((await c.get(f"/v1/files/{first}")).json()["created_at"])
        second = await put_file(c, "default", b"22")

        async def listed(**params: str) -> list[str] | None:
            r = await c.get("/v1/files", params=params)
            assert r.status_code == 200, r.text
            return [f["id"] for f in r.json()["items"]]

        async def both() -> bool:
            return len(await listed() or []) == 2

        await wait_until(both)
        after = (created + timedelta(microseconds=1)).isoformat()
        assert await listed(created_after=after) == [second]
        assert await listed(created_before=after) == [first]
        assert await listed(created_after=created.isoformat(), sort="size", order="asc") == [
            first,
            second,
        ]
        assert_error(
            await c.get("/v1/files", params={"created_after": "yesterday"}), 400, "invalid_query"
        )
        # A NUL in a filter (no stored value holds one) is a bad query, never a 500.
        for q in ("bucket=a%00b", "prefix=%00", "content_type=text%00"):
            assert_error(await c.get(f"/v1/files?{q}"), 400, "invalid_query")


async def test_anonymous_cannot_patch(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        fid = await put_file(c, "default", b"x")
    async with httpx.AsyncClient(base_url=shared_system.url) as anon:
        assert (await anon.patch(f"/v1/files/{fid}", json={"name": "y"})).status_code == 401
