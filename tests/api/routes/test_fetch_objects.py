"""A fetch into a bucket key: `POST /v1/fetches {url, bucket, key}` ends as the object at
(bucket, key), served by the object routes; the same URL into another key is that key's
own fetch (from the bytes already fetched); a refresh makes the object's new version; keys
and buckets are checked first."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from domain.files.keys import object_file_id
from tests.api.origins import origin_server, until
from tests.api.routes.test_fetches import listed_completed, post
from tests.system import System, isolated_system, wait_until


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def osys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        fetch_allow_private=True,
        fetch_lease=3.0,
        fetch_backoff=0.05,
        fetch_per_owner=50,
        fetch_concurrency=50,
    ) as s:
        yield s


def opath(bucket: str, key: str) -> str:
    return f"/v1/buckets/{bucket}/objects/{quote(key, safe='/')}"


async def make_bucket(c: httpx.AsyncClient) -> str:
    name = f"fo-{secrets.token_hex(5)}"
    r = await c.post("/v1/buckets", json={"name": name})
    assert r.status_code == 201, r.text
    return name


async def object_bytes(c: httpx.AsyncClient, bucket: str, key: str, want: bytes) -> bytes:
    async def served() -> bytes | None:
        r = await c.get(opath(bucket, key))
        return r.content if r.status_code == 200 and r.content == want else None

    return await wait_until(served, timeout=30)  # type: ignore[no-any-return]


async def test_a_fetch_into_a_key_becomes_that_object(osys: System) -> None:
    async with origin_server() as o, osys.client("fo-ann") as c:
        bucket = await make_bucket(c)
        key = "models/v1/model.bin"
        f = await post(c, o.url("/range/m.bin"), bucket=bucket, key=key, sha256=o.sha256)
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert (done["bucket"], done["key"]) == (bucket, key)
        assert done["file_id"] == object_file_id(bucket, key)
        assert await object_bytes(c, bucket, key, o.data) == o.data
        head = await c.head(opath(bucket, key))
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(o.data)
        meta = (await c.get(f"/v1/files/{done['file_id']}")).json()
        assert meta["sha256"] == o.sha256 and meta["bucket"] == bucket
        assert meta["metadata"]["fetch_id"] == f["id"]

        async def listed() -> list[str] | None:  # the listing is a read model: it may lag
            items = (await c.get(f"/v1/buckets/{bucket}/objects")).json()["items"]
            keys = [i["key"] for i in items]
            return keys if keys else None

        assert await wait_until(listed, timeout=30) == [key]
        # The same URL into the same key: the same fetch (nothing downloaded again)
        again = await post(c, o.url("/range/m.bin"), bucket=bucket, key=key)
        assert again["id"] == f["id"] and again["reused"] is True
        assert again["file_id"] == done["file_id"]
        # into another key: that key's own fetch and object, from the bytes already
        # fetched (handlers/fetch_reuse.py, which looks in the read model): the origin is
        # not asked again
        await listed_completed(c, f["id"])
        g = await post(c, o.url("/range/m.bin"), bucket=bucket, key="copy.bin")
        assert g["id"] != f["id"]
        copied = await until(c, g["id"], "COMPLETED", "FAILED")
        assert copied["status"] == "COMPLETED" and copied["sha256"] == o.sha256
        assert copied["file_name"] == "m.bin" and copied["etag"] == done["etag"]
        assert await object_bytes(c, bucket, "copy.bin", o.data) == o.data
        # and without a key: a plain file, not an object
        h = await post(c, o.url("/range/m.bin"))
        plain = await until(c, h["id"], "COMPLETED", "FAILED")
        assert plain["file_id"] not in (object_file_id(bucket, key), None)
        assert o.counts["/range/m.bin"] == 1
        reasons = await osys.pool.fetch(
            "SELECT data->>'reason' AS reason FROM eventstore.events WHERE stream_id = $1"
            " AND event_type = 'FetchResponseReceived'",
            f"fetch-{g['id']}",
        )
        assert [r["reason"] for r in reasons] == [f"reused the bytes of fetch {f['id']}"]


async def test_a_refresh_makes_the_objects_new_version(osys: System) -> None:
    async with origin_server() as o, osys.client("fo-bob") as c:
        bucket = await make_bucket(c)
        f = await post(c, o.url("/range/data.csv"), bucket=bucket, key="data.csv")
        assert (await until(c, f["id"], "COMPLETED", "FAILED"))["status"] == "COMPLETED"
        first = o.data
        await object_bytes(c, bucket, "data.csv", first)
        o.data = os.urandom(200_000)  # the origin publishes new content
        g = await post(c, o.url("/range/data.csv"), bucket=bucket, key="data.csv", refresh=True)
        assert g["id"] != f["id"]
        done = await until(c, g["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED" and done["file_id"] == object_file_id(
            bucket, "data.csv"
        )
        assert await object_bytes(c, bucket, "data.csv", o.data) == o.data
        events = await osys.pool.fetch(
            "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
            f"file-{object_file_id(bucket, 'data.csv')}",
        )
        assert [r["event_type"] for r in events] == ["FileCreated", "FileReplaced"]


async def test_keys_and_buckets_are_checked_before_anything_is_fetched(osys: System) -> None:
    async with (
        origin_server() as o,
        osys.client("fo-cat") as c,
        osys.client("fo-dan") as other,
        osys.client("fo-admin", admin=True) as admin,
    ):
        mine = await make_bucket(c)
        theirs = await make_bucket(other)
        url = o.url("/range/x")
        for body, status, code in [
            ({"key": "k"}, 400, "key_needs_bucket"),
            ({"bucket": "default", "key": "k"}, 400, "key_needs_bucket"),
            ({"bucket": mine, "key": ""}, 400, "invalid_key"),
            ({"bucket": mine, "key": "a\u0000b"}, 400, "invalid_key"),
            ({"bucket": mine, "key": "é" * 513}, 400, "invalid_key"),  # 1026 bytes of UTF-8
            ({"bucket": theirs, "key": "k"}, 404, "bucket_not_found"),
            ({"bucket": "no-such-bucket-here", "key": "k"}, 404, "bucket_not_found"),
        ]:
            r = await c.post("/v1/fetches", json={"url": url, **body})
            assert r.status_code == status, (body, r.text)
            assert r.json()["error"]["code"] == code, (body, r.text)
        # an admin may fetch into no one else's bucket key either (the object would be
        # the admin's in another user's bucket)
        r = await admin.post("/v1/fetches", json={"url": url, "bucket": theirs, "key": "k"})
        assert r.status_code == 404, r.text
        # `..` and leading `/` are ordinary key characters (S3), never a path
        f = await post(c, url, bucket=mine, key="../odd/./key")
        assert (await until(c, f["id"], "COMPLETED", "FAILED"))["status"] == "COMPLETED"
        assert o.counts.get("/range/x") == 1
