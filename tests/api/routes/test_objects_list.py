"""ListObjectsV2: prefix, delimiter and common prefixes, start_after, limit, the opaque
cursor, key order, and paging while objects are added (nothing skipped or repeated)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def listing(c: httpx.AsyncClient, bucket: str, **params: Any) -> dict[str, Any]:
    r = await c.get(f"/v1/buckets/{bucket}/objects", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["key_count"] == len(body["items"]) + len(body["common_prefixes"])
    return body


async def all_pages(c: httpx.AsyncClient, bucket: str, **params: Any) -> list[str]:
    """Every entry (keys and common prefixes) through the cursor."""
    out: list[str] = []
    cursor = None
    while True:
        body = await listing(c, bucket, **params, **({"cursor": cursor} if cursor else {}))
        # Within a page, objects and common prefixes interleave in key order.
        out += sorted([i["key"] for i in body["items"]] + body["common_prefixes"])
        if not body["is_truncated"]:
            assert body["next_cursor"] is None
            return out
        cursor = body["next_cursor"]


async def put_all(c: httpx.AsyncClient, bucket: str, keys: list[str]) -> None:
    rs = await asyncio.gather(*(c.put(opath(bucket, k), content=k.encode()) for k in keys))
    assert all(r.status_code == 201 for r in rs), [r.text for r in rs if r.status_code != 201]


async def listed(c: httpx.AsyncClient, bucket: str, n: int) -> bool:
    return len(await all_pages(c, bucket)) == n


KEYS = [
    "a.txt",
    "photos/2025/x.jpg",
    "photos/2026/y.jpg",
    "photos/2026/z.jpg",
    "photos/top.jpg",
    "photos0",
    "zeta",
    "é",  # after every ASCII key: code point order
]


async def test_prefix_delimiter_and_order(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        await put_all(c, b, KEYS)
        await wait_until(lambda: listed(c, b, len(KEYS)))

        body = await listing(c, b)
        assert [i["key"] for i in body["items"]] == sorted(KEYS)
        item = body["items"][0]
        assert item["size"] == len("a.txt") and item["etag"] == f'"{item["sha256"]}"'
        assert not body["is_truncated"] and body["common_prefixes"] == []

        body = await listing(c, b, delimiter="/")
        assert [i["key"] for i in body["items"]] == ["a.txt", "photos0", "zeta", "é"]
        assert body["common_prefixes"] == ["photos/"]

        body = await listing(c, b, prefix="photos/", delimiter="/")
        assert [i["key"] for i in body["items"]] == ["photos/top.jpg"]
        assert body["common_prefixes"] == ["photos/2025/", "photos/2026/"]

        body = await listing(c, b, prefix="photos/2026/")
        assert [i["key"] for i in body["items"]] == ["photos/2026/y.jpg", "photos/2026/z.jpg"]
        assert (await listing(c, b, prefix="nothing"))["key_count"] == 0

        body = await listing(c, b, start_after="photos/2026/y.jpg")
        assert [i["key"] for i in body["items"]] == sorted(KEYS)[3:]

        # Pages of every size give the same entries, each once, in order.
        for limit in (1, 2, 3, 7):
            assert await all_pages(c, b, limit=limit) == sorted(KEYS)
            entries = await all_pages(c, b, limit=limit, delimiter="/")
            assert entries == ["a.txt", "photos/", "photos0", "zeta", "é"]
        page = await listing(c, b, limit=2, delimiter="/")
        assert page["is_truncated"] and page["key_count"] == 2 and page["next_cursor"]


async def test_bad_listing_input(shared_system: System) -> None:
    owner, other = user(), user()
    async with shared_system.client(owner) as c, shared_system.client(other) as o:
        b = await make_bucket(c)
        assert_error(await o.get(f"/v1/buckets/{b}/objects"), 404, "bucket_not_found")
        assert_error(await c.get(f"/v1/buckets/{b}x/objects"), 404, "bucket_not_found")
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}):
            r = await c.get(f"/v1/buckets/{b}/objects", params=params)
            assert r.status_code == 400, r.text
        assert_error(
            await c.get(f"/v1/buckets/{b}/objects", params={"cursor": "garbage!"}),
            400,
            "invalid_cursor",
        )
        assert_error(
            await c.get(f"/v1/buckets/{b}/objects", params={"prefix": "a\x00"}),
            400,
            "invalid_query",
        )
        assert_error(
            await c.get(f"/v1/buckets/{b}/objects", params={"bogus": "1"}),
            400,
            "unknown_query_parameter",
        )
        public = await make_bucket(c, public=True)
        assert (await o.get(f"/v1/buckets/{public}/objects")).status_code == 200


async def test_paging_while_objects_are_added(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        before = [f"k/{i:04d}" for i in range(0, 120, 2)]  # even numbers
        await put_all(c, b, before)
        await wait_until(lambda: listed(c, b, len(before)))

        seen: list[str] = []
        cursor = None
        added: list[str] = []
        odd = iter(range(1, 120, 2))
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            body = await listing(c, b, **params)
            seen += [i["key"] for i in body["items"]]
            # Between pages, new keys land everywhere: before, at and after the cursor.
            batch = [f"k/{next(odd):04d}" for _ in range(3)]
            batch.append(f"k/{secrets.token_hex(3)}")
            await put_all(c, b, batch)
            added += batch
            if not body["is_truncated"]:
                break
            cursor = body["next_cursor"]
        assert seen == sorted(seen) and len(seen) == len(set(seen))  # in order, never twice
        assert set(before) <= set(seen)  # nothing that existed all along was skipped
        assert set(seen) <= set(before) | set(added)
