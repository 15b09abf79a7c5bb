"""Listing keys around the listing's one lower bound (projections/object_queries.py:
`after` + U+0001, `start` past a common prefix, the prefix's successor): keys ending in
U+0001 or U+10FFFF, keys equal to the prefix, delimiters of several characters, and every
combination of prefix, delimiter and start_after answer what S3's ListObjectsV2 would
(a model of it here), each entry once, through pages of any size. A cursor is of no use
to another user: their bucket is 404, never listed."""

from __future__ import annotations

import itertools

import pytest

from tests.api.answers import assert_error, make_bucket, user
from tests.api.routes.test_objects_list import all_pages, listed, listing, put_all
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOP = "\U0010ffff"
KEYS = [
    "a",
    "a\x01",
    "a\x01\x01",
    "a\x01b",
    "a\x02",
    "a" + TOP,
    "a" + TOP + TOP,
    "a" + TOP + "z",
    "a/",
    "a/b",
    "a//c",
    "a/\x01",
    "ab",
    "b" + TOP,
    TOP,
    TOP + TOP + "/x",
    "\ud7ff",
    "\ue000",
]
PREFIXES = ["", "a", "a\x01", "a" + TOP, TOP, "a/", "zz"]
DELIMITERS = [None, "/", "\x01", TOP, "//", "/\x01", "a\x01"]
STARTS = [None, "a", "a\x01", "a" + TOP, "a/", TOP]


def model(prefix: str, delimiter: str | None, after: str | None) -> list[str]:
    """S3's answer: the keys under `prefix` after `after`, in code point order, those with
    `delimiter` past the prefix rolled up into their common prefix (listed once)."""
    out: list[str] = []
    for k in sorted(KEYS):
        if not k.startswith(prefix) or (after is not None and k <= after):
            continue
        rest = k[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common not in out:
                out.append(common)
        else:
            out.append(k)
    return out


def params(prefix: str, delimiter: str | None, after: str | None) -> dict[str, str]:
    p = {"prefix": prefix}
    if delimiter is not None:
        p["delimiter"] = delimiter
    if after is not None:
        p["start_after"] = after
    return p


async def test_every_prefix_delimiter_and_start_after_answers_as_s3(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        await put_all(c, b, KEYS)
        await wait_until(lambda: listed(c, b, len(KEYS)))
        for prefix, delimiter, after in itertools.product(PREFIXES, DELIMITERS, STARTS):
            got = await all_pages(c, b, **params(prefix, delimiter, after))
            assert got == model(prefix, delimiter, after), (prefix, delimiter, after)
        # Pages of one and two entries: the lower bound after each key and each jump.
        for prefix, delimiter in itertools.product(["", "a", TOP], [None, "\x01", TOP, "//"]):
            for limit in (1, 2):
                got = await all_pages(c, b, limit=limit, **params(prefix, delimiter, None))
                assert got == model(prefix, delimiter, None), (prefix, delimiter, limit)


async def test_a_cursor_lists_nothing_of_another_users_bucket(shared_system: System) -> None:
    owner, other = user(), user()
    async with shared_system.client(owner) as c, shared_system.client(other) as o:
        b = await make_bucket(c)
        await put_all(c, b, ["k1", "k2", "k3"])
        await wait_until(lambda: listed(c, b, 3))
        page = await listing(c, b, limit=1)
        cursor = page["next_cursor"]
        assert cursor
        # The owner's cursor, by someone else: the bucket does not exist for them.
        r = await o.get(f"/v1/buckets/{b}/objects", params={"cursor": cursor})
        assert_error(r, 404, "bucket_not_found")
        # In a bucket of their own, it is only a key to start after: nothing of the owner's.
        mine = await make_bucket(o)
        body = await listing(o, mine, cursor=cursor)
        assert body["items"] == [] and body["key_count"] == 0
        # And the owner's cursor in another of the owner's buckets pages that bucket only.
        b2 = await make_bucket(c)
        await put_all(c, b2, ["k0", "k9"])
        await wait_until(lambda: listed(c, b2, 2))
        body = await listing(c, b2, cursor=cursor)
        assert [i["key"] for i in body["items"]] == ["k9"]
