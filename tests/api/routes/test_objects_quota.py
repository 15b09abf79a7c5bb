"""Object PUTs against the owner's quota through the whole system: an overwrite is judged
by what it adds to its key (projections/usage.py `reserve` with a target), not by its
whole size. Real Postgres, broker and API."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from domain.files.keys import object_file_id
from tests.api.quota import QUOTA
from tests.api.routes.test_uploads_complete import assert_error, chunked, create
from tests.api.tus.test_deferred_length_quota import all_begun, gated
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@asynccontextmanager
async def owner_with_bucket(s: System) -> AsyncIterator[tuple[str, str, httpx.AsyncClient, str]]:
    """A new owner and a new bucket of theirs: (owner, bucket, their client, the bucket's
    objects path)."""
    me = f"u-{secrets.token_hex(4)}"
    bucket = f"q-{secrets.token_hex(4)}"
    async with s.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        yield me, bucket, c, f"/v1/buckets/{bucket}/objects"


async def listed(s: System, bucket: str, key: str, size: int) -> None:
    """Until the files read model shows the object's version of `size` bytes."""

    async def check() -> bool:
        got = await s.pool.fetchval(
            "SELECT size FROM readmodel.files WHERE id = $1 AND deleted_at IS NULL",
            uuid.UUID(object_file_id(bucket, key)),
        )
        return bool(got == size)

    await wait_until(check)


async def test_an_overwrite_at_the_quota_is_judged_by_its_net_change(qsys: System) -> None:
    async with owner_with_bucket(qsys) as (_me, bucket, c, objects):
        assert (await c.put(f"{objects}/a", content=os.urandom(60_000))).status_code == 201
        assert (await c.put(f"{objects}/b", content=os.urandom(40_000))).status_code == 201
        # At the quota: the same size again, and a smaller one, add nothing (413 before).
        r = await c.put(f"{objects}/a", content=os.urandom(60_000))
        assert r.status_code == 200, r.text
        small = os.urandom(30_000)
        r = await c.put(f"{objects}/a", content=small)
        assert r.status_code == 200, r.text
        assert (await c.get(f"{objects}/a")).content == small
        await listed(qsys, bucket, "a", 30_000)
        # Growing is judged by the growth: 30,000 are free, 30,001 more are not.
        r = await c.put(f"{objects}/a", content=os.urandom(60_001))
        err = assert_error(r, 413, "quota_exceeded")
        assert err["details"] == {
            "quota": QUOTA,
            "used": 70_000,
            "requested": 30_001,
            "replaced": 30_000,
        }
        assert (await c.get(f"{objects}/a")).content == small  # the refused put changed nothing
        # A body without a length may bring what is left plus what its key holds.
        data = os.urandom(70_000)
        r = await c.put(f"{objects}/b", content=chunked(data))
        assert r.status_code == 200, r.text
        assert (await c.get(f"{objects}/b")).content == data
        r = await c.put(f"{objects}/a", content=chunked(os.urandom(30_001)))
        assert_error(r, 413, "quota_exceeded")
        # Nothing is left: a new object or upload still cannot come in.
        assert_error(await c.put(f"{objects}/c", content=b"x"), 413, "quota_exceeded")
        assert_error(await create(c, 1), 413, "quota_exceeded")


async def test_a_copy_counts_as_a_put_of_its_sources_size(qsys: System) -> None:
    async with owner_with_bucket(qsys) as (_me, bucket, c, objects):
        assert (await c.put(f"{objects}/a", content=os.urandom(60_000))).status_code == 201
        copy = {"x-amz-copy-source": f"/{bucket}/a"}
        # 60,000 more do not fit beside 60,000 (the content is shared, but it counts twice,
        # as two files do), nor onto a key of 30,000: it adds 30,000 to 90,000.
        err = assert_error(await c.put(f"{objects}/b", headers=copy), 413, "quota_exceeded")
        assert (err["details"]["used"], err["details"]["requested"]) == (60_000, 60_000)
        assert (await c.put(f"{objects}/b", content=os.urandom(30_000))).status_code == 201
        await listed(qsys, bucket, "b", 30_000)
        err = assert_error(await c.put(f"{objects}/b", headers=copy), 413, "quota_exceeded")
        assert err["details"]["replaced"] == 30_000
        # The smaller onto the larger frees what it replaces: at the quota, still fine.
        r = await c.put(f"{objects}/a", headers={"x-amz-copy-source": f"/{bucket}/b"})
        assert r.status_code == 200 and r.json()["size"] == 30_000, r.text


async def test_concurrent_overwrites_and_a_delete_never_take_the_owner_past_the_quota(
    qsys: System,
) -> None:
    """At the quota, five PUTs of one key (none larger than what it holds), its DELETE and
    a PUT of a new key, all at once: an overwrite passes (it adds nothing) unless the
    delete was applied first and the new key took the room (then it would make the key
    afresh), and whichever order they are applied in, what is stored in the end fits the
    quota (the new key gets in only if the delete was applied and the puts were gone by
    then)."""
    async with owner_with_bucket(qsys) as (_me, _bucket, c, objects):
        assert (await c.put(f"{objects}/a", content=os.urandom(60_000))).status_code == 201
        assert (await c.put(f"{objects}/b", content=os.urandom(40_000))).status_code == 201
        sizes = [60_000, 50_000, 40_000, 60_000, 30_000]
        got = await asyncio.gather(
            *[c.put(f"{objects}/a", content=os.urandom(n)) for n in sizes],
            c.delete(f"{objects}/a"),
            c.put(f"{objects}/c", content=os.urandom(60_000)),
        )
        puts = [r.status_code for r in got[: len(sizes)]]
        assert all(code in (200, 201, 413) for code in puts), [r.text for r in got]
        # Without the new key, `a` never needs more than it had (b's 40,000 beside any put
        # of it fits): a put of `a` is refused only where the delete was applied first and
        # the new key took the room, so that put would have made `a` afresh.
        if 413 in puts:
            assert got[-1].status_code == 201, [(r.status_code, r.text) for r in got]
        assert got[len(sizes)].status_code == 204, got[len(sizes)].text
        assert got[-1].status_code in (201, 413), got[-1].text
        stored = 0
        for key in "abc":
            r = await c.get(f"{objects}/{key}")
            assert r.status_code in (200, 404), r.text
            stored += len(r.content) if r.status_code == 200 else 0
        assert stored <= QUOTA, stored


async def test_concurrent_chunked_puts_never_take_the_owner_past_the_quota(qsys: System) -> None:
    """Six bodies without a length, all begun before any ends, each under what is left of
    the quota but together over it: those that do not fit beside the others are 413
    quota_exceeded and leave no object, and what is stored fits the quota."""
    async with owner_with_bucket(qsys) as (me, bucket, c, objects):
        assert (await c.put(f"{objects}/base", content=os.urandom(40_000))).status_code == 201
        keys = [f"k{i}" for i in range(6)]  # 6 x 25,000 against the 60,000 left
        gate = asyncio.Event()
        tasks = [
            asyncio.create_task(
                c.put(f"{objects}/{k}", content=gated(b"x" * 5_000, b"x" * 20_000, gate))
            )
            for k in keys
        ]
        await wait_until(lambda: all_begun(qsys, me, tasks))
        gate.set()
        got = await asyncio.gather(*tasks)
        codes = [r.status_code for r in got]
        assert set(codes) <= {201, 413}, [r.text for r in got]
        assert 1 <= codes.count(201) <= 2, codes
        for k, r in zip(keys, got, strict=True):
            if r.status_code == 413:
                assert_error(r, 413, "quota_exceeded")
                assert (await c.get(f"{objects}/{k}")).status_code == 404
            else:
                await listed(qsys, bucket, k, 25_000)
        assert 40_000 + 25_000 * codes.count(201) <= QUOTA


async def test_a_chunked_puts_bytes_are_held_as_they_come(qsys: System) -> None:
    """A body without a length holds what it brought while it still comes: a create that
    does not fit beside those bytes is refused meanwhile (it passed, and the PUT was then
    refused at its end having been read whole), and the PUT ends with its object."""
    async with owner_with_bucket(qsys) as (me, bucket, c, objects):
        gate = asyncio.Event()
        data = os.urandom(30_000)
        put = asyncio.create_task(c.put(f"{objects}/a", content=gated(data, data, gate)))

        async def held() -> bool:
            most = await qsys.pool.fetchval(
                "SELECT max(bytes) FROM api.quota_reservations WHERE owner = $1", me
            )
            return bool(most is not None and most >= 30_000)

        await wait_until(held, timeout=10)
        err = assert_error(await create(c, 50_000), 413, "quota_exceeded")
        assert err["details"]["used"] >= 30_000, err
        gate.set()
        r = await put
        assert r.status_code == 201, r.text
        assert (await c.get(f"{objects}/a")).content == data + data
        await listed(qsys, bucket, "a", 60_000)
        # Held as 60,000 bytes, the object's: 40,000 are left, and no more.
        assert (await create(c, 40_000)).status_code == 201
        assert_error(await create(c, 1), 413, "quota_exceeded")
