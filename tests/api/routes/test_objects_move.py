"""Renaming and moving objects through the whole system: `PATCH /v1/files/{id}` with `key`
and/or `bucket` is copy-then-delete (api/object_move.py): the new key serves the same
bytes from the same chunks, the old key is gone, a taken destination is 409, another
user's bucket 404, a bad key 400."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from api import object_move
from domain.files.keys import object_file_id
from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_rename_within_a_bucket(shared_system: System) -> None:
    body = secrets.token_bytes(70_000)
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.put(opath(b, "a/old.bin"), content=body)
        assert r.status_code == 201, r.text
        old = r.json()
        f = await c.get(f"/v1/files/{old['id']}")
        old_chunks = f.json()["chunk_count"]

        r = await c.patch(f"/v1/files/{old['id']}", json={"key": "b/new name ü.bin"})
        assert r.status_code == 200, r.text
        moved = r.json()
        assert moved["id"] == object_file_id(b, "b/new name ü.bin") != old["id"]
        assert (moved["bucket"], moved["key"]) == (b, "b/new name ü.bin")
        assert moved["sha256"] == hashlib.sha256(body).hexdigest() == old["sha256"]
        assert moved["chunk_count"] == old_chunks and moved["size"] == len(body)

        g = await c.get(opath(b, "b/new name ü.bin"))
        assert g.status_code == 200 and g.content == body
        assert_error(await c.get(opath(b, "a/old.bin")), 404, "object_not_found")
        assert_error(await c.get(f"/v1/files/{old['id']}"), 404, "file_not_found")
        # Two aggregates: the new one created, the old one deleted (no bytes re-ingested).
        assert await object_events(shared_system.pool, b, "b/new name ü.bin") == ["FileCreated"]
        assert (await object_events(shared_system.pool, b, "a/old.bin"))[-1] == "FileDeleted"


async def test_move_to_another_own_bucket(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b1, b2 = await make_bucket(c), await make_bucket(c)
        r = await c.put(opath(b1, "k.txt"), content=b"moving", headers={"Content-Type": "text/x"})
        oid = r.json()["id"]
        # Only the bucket: the key stays.
        r = await c.patch(f"/v1/files/{oid}", json={"bucket": b2})
        assert r.status_code == 200, r.text
        assert (r.json()["bucket"], r.json()["key"]) == (b2, "k.txt")
        g = await c.get(opath(b2, "k.txt"))
        assert g.content == b"moving" and g.headers["content-type"].startswith("text/x")
        assert_error(await c.get(opath(b1, "k.txt")), 404, "object_not_found")

        async def listed(bucket: str, keys: list[str]) -> bool:
            r = await c.get(f"/v1/buckets/{bucket}/objects")
            return [o["key"] for o in r.json()["items"]] == keys

        # The listings (read model) follow: the key in the new bucket, gone from the old.
        await wait_until(lambda: listed(b2, ["k.txt"]))
        await wait_until(lambda: listed(b1, []))
        # Both at once, back again.
        r = await c.patch(f"/v1/files/{r.json()['id']}", json={"bucket": b1, "key": "z"})
        assert r.status_code == 200, r.text
        assert (await c.get(opath(b1, "z"))).content == b"moving"


async def test_taken_destination_is_409_and_changes_nothing(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "src"), content=b"source")).json()
        await c.put(opath(b, "dst"), content=b"taken")
        err = assert_error(
            await c.patch(f"/v1/files/{src['id']}", json={"key": "dst"}), 409, "object_exists"
        )
        assert err["details"] == {"bucket": b, "key": "dst"}
        assert (await c.get(opath(b, "src"))).content == b"source"
        assert (await c.get(opath(b, "dst"))).content == b"taken"
        # The same key in the same bucket: nothing to do, the object as it is.
        r = await c.patch(f"/v1/files/{src['id']}", json={"key": "src", "bucket": b})
        assert r.status_code == 200 and r.json()["id"] == src["id"]


async def test_a_put_of_the_old_key_during_a_move_is_kept(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "race"), content=b"v1")).json()
        send_as = object_move.send_as

        async def put_then_send(*args: object, **kw: object) -> object:
            # Between the copy and the delete: another client writes the old key again.
            r = await c.put(opath(b, "race"), content=b"v2")
            assert r.status_code == 200, r.text
            return await send_as(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(object_move, "send_as", put_then_send)
        r = await c.patch(f"/v1/files/{src['id']}", json={"key": "moved"})
        assert r.status_code == 200, r.text
        # The version moved is at the new key; the write that came after it is not lost.
        assert (await c.get(opath(b, "moved"))).content == b"v1"
        assert (await c.get(opath(b, "race"))).content == b"v2"
        assert await object_events(shared_system.pool, b, "race") == [
            "FileCreated",
            "FileReplaced",
        ]


async def test_another_users_bucket_is_404(shared_system: System) -> None:
    async with shared_system.client(user()) as other:
        theirs = await make_bucket(other)
        public = await make_bucket(other, public=True)
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "mine"), content=b"x")).json()
        for dest in (theirs, public, f"b-{secrets.token_hex(6)}"):
            assert_error(
                await c.patch(f"/v1/files/{src['id']}", json={"bucket": dest}),
                404,
                "bucket_not_found",
            )
        assert (await c.get(opath(b, "mine"))).content == b"x"
    async with shared_system.client(user()) as stranger:
        # Someone else's object: 404 as for any file of theirs.
        assert_error(
            await stranger.patch(f"/v1/files/{src['id']}", json={"key": "stolen"}),
            404,
            "file_not_found",
        )


async def test_bad_key_and_bad_combinations_are_400(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "ok"), content=b"x")).json()
        # Only slashes: `objects//` is the listing's path, so that key could not be read.
        for bad in ("", "é" * 600, "a\x00b", "/", "//"):
            assert_error(
                await c.patch(f"/v1/files/{src['id']}", json={"key": bad}), 400, "invalid_key"
            )
        assert_error(
            await c.patch(f"/v1/files/{src['id']}", json={"bucket": "default"}),
            400,
            "invalid_bucket_name",
        )
        assert_error(
            await c.patch(f"/v1/files/{src['id']}", json={"key": "n", "metadata": {"a": "b"}}),
            400,
            "invalid_update",
        )
        assert (await c.get(opath(b, "ok"))).content == b"x"
        assert (await c.get(opath(b, "n"))).status_code == 404
