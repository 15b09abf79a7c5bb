"""Buckets through the whole system: create, list, read with usage, change, delete (409 on a
non-empty bucket, `force=true` deleting its objects by events), and the bad input of
issue 9. Another user's bucket answers exactly like a missing one.
"""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.answers import assert_error, bname, make_bucket, opath, user
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def put_file(c: httpx.AsyncClient, bucket: str, data: bytes) -> str:
    r = await c.post(
        "/v1/uploads",
        json={
            "file_name": "f.bin",
            "file_size": len(data),
            "chunk_size": max(1, len(data)),
            "bucket": bucket,
        },
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


async def live_in_read_model(pool: asyncpg.Pool, file_ids: list[str]) -> bool:
    n = await pool.fetchval(
        "SELECT count(*) FROM readmodel.files WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL",
        file_ids,
    )
    return bool(n == len(file_ids))


async def bucket_events(pool: asyncpg.Pool, name: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
        f"bucket-{name}",
    )
    return [r["event_type"] for r in rows]


async def test_create_get_update_and_list(shared_system: System) -> None:
    me, name = user(), bname()
    async with shared_system.client(me) as c:
        r = await c.post("/v1/buckets", json={"name": name, "description": "cats"})
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/v1/buckets/{name}"
        b = r.json()
        assert (b["name"], b["owner"], b["public"], b["description"]) == (name, me, False, "cats")

        # The same create again (a retry) is answered, not refused.
        again = await c.post("/v1/buckets", json={"name": name, "description": "cats"})
        assert again.status_code == 201 and again.json() == b, again.text

        r = await c.get(f"/v1/buckets/{name}")
        assert r.status_code == 200, r.text
        assert r.json()["usage"] == {"objects": 0, "bytes": 0}

        r = await c.patch(f"/v1/buckets/{name}", json={"public": True})
        assert r.status_code == 200, r.text
        assert r.json()["public"] is True and r.json()["description"] == "cats"
        # The same change again records nothing.
        assert (await c.patch(f"/v1/buckets/{name}", json={"public": True})).status_code == 200
        assert await bucket_events(shared_system.pool, name) == ["BucketCreated", "BucketUpdated"]

        # Now that it is public, a create asking for a private one is refused.
        assert_error(
            await c.post("/v1/buckets", json={"name": name, "description": "cats"}),
            409,
            "bucket_exists",
        )

        other = bname()
        assert (await c.post("/v1/buckets", json={"name": other})).status_code == 201

        async def listed() -> list[str] | None:
            r = await c.get("/v1/buckets")
            names = [b["name"] for b in r.json()["items"]]
            return names if len(names) == 2 else None

        names = await wait_until(listed)
        assert names == sorted([name, other])
        # Paging by cursor: one per page, nothing skipped or repeated.
        r1 = (await c.get("/v1/buckets", params={"limit": 1})).json()
        r2 = (await c.get("/v1/buckets", params={"limit": 1, "cursor": r1["next_cursor"]})).json()
        assert [b["name"] for b in r1["items"] + r2["items"]] == names
        r3 = await c.get("/v1/buckets", params={"limit": 1, "cursor": r2["next_cursor"]})
        assert r3.json()["items"] == [] and r3.json()["next_cursor"] is None


async def test_other_users_see_nothing_admins_see_all(shared_system: System) -> None:
    me, them, name = user(), user(), bname()
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
    async with shared_system.client(them) as o:
        missing = assert_error(await o.get(f"/v1/buckets/{bname()}"), 404, "bucket_not_found")
        theirs = assert_error(await o.get(f"/v1/buckets/{name}"), 404, "bucket_not_found")
        assert set(missing) == set(theirs)
        # The message names what was asked for (a CLI prints only it), and nothing more.
        assert theirs["message"] == f"no such bucket: {name!r}"
        assert missing["message"].startswith("no such bucket: '")
        # The same words from decide (a PATCH is a command), the API and a task's params.
        patched = assert_error(
            await o.patch(f"/v1/buckets/{name}", json={"public": True}), 404, "bucket_not_found"
        )
        assert patched["message"] == theirs["message"]
        assert_error(await o.delete(f"/v1/buckets/{name}"), 404, "bucket_not_found")
        task = assert_error(
            await o.post(
                "/v1/tasks",
                json={"type": "delete", "params": {"bucket": name, "prefix": "x/"}},
            ),
            404,
            "bucket_not_found",
        )
        assert task["message"] == theirs["message"]
        assert (await o.get("/v1/buckets")).json()["items"] == []
        # Names are global, like S3's: taken is taken.
        assert_error(await o.post("/v1/buckets", json={"name": name}), 409, "bucket_exists")
    async with shared_system.client("root", admin=True) as a:
        assert (await a.get(f"/v1/buckets/{name}")).json()["owner"] == me

        async def seen() -> bool:
            r = await a.get("/v1/buckets", params={"limit": 1000})
            return name in [b["name"] for b in r.json()["items"]]

        await wait_until(seen)
    async with shared_system.client(None) as anon:
        assert (await anon.get("/v1/buckets")).status_code == 401
    assert await bucket_events(shared_system.pool, name) == ["BucketCreated"]


async def test_usage_and_delete_non_empty(shared_system: System) -> None:
    me, name = user(), bname()
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
        ids = [await put_file(c, name, b"x" * n) for n in (10, 20, 30)]
        outside = await put_file(c, "default", b"y" * 5)
        await wait_until(lambda: live_in_read_model(shared_system.pool, [*ids, outside]))

        r = await c.get(f"/v1/buckets/{name}")
        assert r.json()["usage"] == {"objects": 3, "bytes": 60}
        assert r.json()["owner_usage"] == {"buckets": 1, "objects": 3, "bytes": 60}

        err = assert_error(await c.delete(f"/v1/buckets/{name}"), 409, "bucket_not_empty")
        assert err["details"]["objects"] == 3
        assert await bucket_events(shared_system.pool, name) == ["BucketCreated"]
        for fid in ids:  # nothing deleted
            assert (await c.get(f"/v1/files/{fid}")).status_code == 200

        r = await c.delete(f"/v1/buckets/{name}", params={"force": "true"})
        assert r.status_code == 200, r.text
        assert r.json() == {"name": name, "deleted": True, "objects_deleted": 3}
        for fid in ids:
            assert (await c.get(f"/v1/files/{fid}")).status_code == 404
        assert (await c.get(f"/v1/files/{outside}")).status_code == 200
        assert_error(await c.get(f"/v1/buckets/{name}"), 404, "bucket_not_found")
        assert await bucket_events(shared_system.pool, name) == ["BucketCreated", "BucketDeleted"]
        deleted = await shared_system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE event_type = 'FileDeleted'"
            " AND stream_id = ANY($1::text[])",
            [f"file-{i}" for i in ids],
        )
        assert deleted == 3

        # The name is free again; an empty bucket deletes without force.
        assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
        assert (await c.delete(f"/v1/buckets/{name}")).status_code == 200


async def test_a_delete_right_after_a_put_sees_the_object(shared_system: System) -> None:
    """Emptiness was read from the read model alone, so a DELETE within the projector's
    lag of an object PUT (or of a file moved in) answered 200 and left the object behind
    in a bucket that was gone. The newest file events are read too: 409, and with
    force=true the object is deleted with the bucket."""
    me, name = user(), bname()
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
        plain = await put_file(c, "default", b"p")
        await shared_system.stop("projector")  # the read model sees none of what follows
        try:
            put = await c.put(f"/v1/buckets/{name}/objects/k", content=b"o")
            assert put.status_code == 201, put.text
            err = assert_error(await c.delete(f"/v1/buckets/{name}"), 409, "bucket_not_empty")
            assert err["details"] == {"name": name, "objects": 1}
            assert (await c.delete(f"/v1/buckets/{name}/objects/k")).status_code == 204
            moved = await c.patch(f"/v1/files/{plain}", json={"bucket": name})
            assert moved.status_code == 200, moved.text
            assert_error(await c.delete(f"/v1/buckets/{name}"), 409, "bucket_not_empty")
            put = await c.put(f"/v1/buckets/{name}/objects/k2", content=b"o2")
            assert put.status_code == 201, put.text
            r = await c.delete(f"/v1/buckets/{name}", params={"force": "true"})
            assert r.status_code == 200, r.text
            assert r.json() == {"name": name, "deleted": True, "objects_deleted": 2}
        finally:
            shared_system.start("projector")
        assert (await c.get(f"/v1/files/{plain}")).status_code == 404
        assert (await c.get(f"/v1/files/{put.json()['id']}")).status_code == 404
        assert_error(await c.get(f"/v1/buckets/{name}"), 404, "bucket_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "UpperCase"}, "invalid_bucket_name"),
        ({"name": "a..b"}, "invalid_bucket_name"),
        ({"name": "192.168.0.1"}, "invalid_bucket_name"),
        ({"name": "a" * 64}, "invalid_bucket_name"),
        ({"name": "ab"}, "invalid_bucket_name"),
        ({"name": "under_score"}, "invalid_bucket_name"),
        ({"name": "default"}, "reserved_bucket_name"),
        ({"name": "ok-name", "public": "yes"}, "validation_error"),
        ({"name": "ok-name", "surprise": 1}, "validation_error"),
        ({"name": "ok-name", "description": "x" * 1025}, "invalid_description"),
        ({}, "validation_error"),
    ],
)
async def test_bad_bucket_input_is_4xx_and_changes_nothing(
    shared_system: System, body: dict[str, Any], code: str
) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/buckets", json=body)
        assert_error(r, 400, code)
    name = str(body.get("name", ""))
    assert await bucket_events(shared_system.pool, name) == []


async def test_bad_names_in_paths_are_not_found(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        for name in ("UPPER", "a..b", "default", "x" * 300):
            assert_error(await c.get(f"/v1/buckets/{name}"), 404, "bucket_not_found")
            assert_error(
                await c.patch(f"/v1/buckets/{name}", json={"public": True}),
                404,
                "bucket_not_found",
            )
            assert_error(await c.delete(f"/v1/buckets/{name}"), 404, "bucket_not_found")
        assert_error(await c.get("/v1/buckets", params={"limit": 0}), 400, "validation_error")
        # A forged cursor holding a NUL (no name holds one) is 400, never a 500.
        assert_error(await c.get("/v1/buckets?cursor=a%00b"), 400, "invalid_cursor")


async def test_uploads_go_only_into_the_callers_own_buckets(shared_system: System) -> None:
    me, them, mine, theirs = user(), user(), bname(), bname()
    async with shared_system.client(them) as o:
        assert (
            await o.post("/v1/buckets", json={"name": theirs, "public": True})
        ).status_code == 201
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": mine})).status_code == 201
        tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
        for target in (theirs, bname(), "Bad_Name"):
            r = await c.post(
                "/v1/uploads", json={"file_name": "f.bin", "file_size": 3, "bucket": target}
            )
            assert_error(r, 404, "bucket_not_found")
            meta = "bucket " + base64.b64encode(target.encode()).decode()
            r = await c.post("/v1/tus", headers={**tus, "Upload-Metadata": meta})
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "bucket_not_found"
        n = await shared_system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE owner = $1", me
        )
        assert n == 1  # only the BucketCreated of `mine`
        fid = await put_file(c, mine, b"abc")
        meta = "bucket " + base64.b64encode(mine.encode()).decode()
        r = await c.post("/v1/tus", headers={**tus, "Upload-Metadata": meta})
        assert r.status_code == 201, r.text
        assert (await c.get(f"/v1/files/{fid}")).json()["bucket"] == mine


async def test_a_cursor_the_listing_did_not_issue_is_400(shared_system: System) -> None:
    """`?cursor=abc` answered a page as if it were a bucket name (the cursor was the last
    name, so any text passed), while the objects listing refuses a cursor it did not issue.
    Every cursor-paged listing now refuses a malformed or foreign cursor alike."""
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        await make_bucket(c)
        r = await c.put(opath(b, "k1"), content=b"1")
        assert r.status_code == 201, r.text
        r = await c.put(opath(b, "k2"), content=b"2")
        assert r.status_code == 201, r.text

        async def objects_cursor() -> str | None:
            r = await c.get(f"/v1/buckets/{b}/objects", params={"limit": 1})
            return r.json()["next_cursor"] if r.status_code == 200 else None

        foreign = await wait_until(objects_cursor)  # issued by the objects listing

        async def buckets_cursor() -> str | None:
            r = await c.get("/v1/buckets", params={"limit": 1})
            return r.json()["next_cursor"] if r.status_code == 200 else None

        issued = await wait_until(buckets_cursor)
        assert issued != b  # opaque, not the name
        for cursor in ("abc", b, foreign, "", "eyJiIjoxfQ", "!!"):
            assert_error(
                await c.get("/v1/buckets", params={"cursor": cursor}), 400, "invalid_cursor"
            )
        # And the objects listing refuses the buckets listing's cursor.
        assert_error(
            await c.get(f"/v1/buckets/{b}/objects", params={"cursor": issued}),
            400,
            "invalid_cursor",
        )
        # The cursor each listing issued still pages it.
        r = await c.get("/v1/buckets", params={"limit": 1, "cursor": issued})
        assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
        r = await c.get(f"/v1/buckets/{b}/objects", params={"cursor": foreign})
        assert r.status_code == 200 and [o["key"] for o in r.json()["items"]] == ["k2"], r.text
