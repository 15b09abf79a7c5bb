"""A tus (or native) upload whose bucket went (deleted since the upload was created, or its
name made again since, by anyone) cannot complete as it is, so it holds only the bytes it
received, not its declared size (projections/usage.py WENT). Its bytes are kept and count;
more bytes into it, once its owner made the bucket again, must fit the quota again (413
before the body when they do not), so the freed room is never handed out twice."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.api.answers import assert_error
from tests.api.documented import assert_documented
from tests.api.quota import QUOTA
from tests.api.tus.test_bucket_gone import OCTETS, TUS, drop_bucket, make_bucket, meta, upload_id
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def tus_create(c: httpx.AsyncClient, size: int, bucket: str | None = None) -> httpx.Response:
    metadata = {"filename": "f.bin"} | ({"bucket": bucket, "key": "k"} if bucket else {})
    return await c.post(
        "/v1/tus", headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta(**metadata)}
    )


async def test_an_upload_into_a_deleted_bucket_holds_only_what_it_received(
    qsys: System,
) -> None:
    data = os.urandom(60_000)
    bucket = f"gq-{secrets.token_hex(4)}"
    async with qsys.client(f"gq-{secrets.token_hex(4)}") as c:
        await make_bucket(c, bucket)
        r = await tus_create(c, len(data), bucket)
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=data[:20_000])
        assert r.status_code == 204, r.text
        assert_error(await tus_create(c, 50_000), 413, "quota_exceeded")  # held: 60,000 of 100,000
        await drop_bucket(c, bucket)
        await wait_until(lambda: _received(qsys, upload_id(url), 20_000))
        # The upload can no longer complete as it is: it holds the 20,000 bytes it has,
        # and the rest of its length is free again (at once: read from the event store).
        r = await tus_create(c, 50_000)
        assert r.status_code == 201, r.text
        other = r.headers["location"]
        err = assert_error(await tus_create(c, 30_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 70_000, err
        # The bucket made again: more bytes into the upload must fit the quota again, all
        # of its length beside everything else. 413 before the body; what it has, kept.
        await make_bucket(c, bucket)
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "20000"}, content=data[20_000:])
        err = assert_error(r, 413, "quota_exceeded")
        # `used` counts its 20,000 bytes, `requested` the rest of its length (as a
        # completion's refusal says).
        assert err["details"] == {"quota": QUOTA, "used": 70_000, "requested": 40_000}, err
        await assert_documented(c, "patch", "/v1/tus/{upload_id}", r)
        r = await c.head(url, headers=TUS)
        assert r.headers["upload-offset"] == "20000", r.headers
        view = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert view["status"] == "IN_PROGRESS" and view["file_id"] is None, view
        assert (await c.delete(other, headers=TUS)).status_code == 204  # room made

        async def other_listed_aborted() -> bool:
            status = await qsys.pool.fetchval(
                "SELECT status FROM readmodel.uploads WHERE id = $1::uuid", upload_id(other)
            )
            return bool(status == "ABORTED")

        await wait_until(other_listed_aborted)
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "20000"}, content=data[20_000:])
        assert r.status_code == 204, r.text
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k")).content == data
        # Counted once, as the file it became.
        err = assert_error(await tus_create(c, 40_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 60_000, err


async def half_sent_into_gone_bucket(c: httpx.AsyncClient, bucket: str, data: bytes) -> str:
    """A native upload of `data` (two chunks of 30,000 bytes) into a new `bucket`, its first
    chunk sent, then the bucket deleted: the upload's id."""
    await make_bucket(c, bucket)
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "f.bin", "file_size": len(data), "chunk_size": 30_000}
        | {"bucket": bucket, "key": "k"},
    )
    assert r.status_code == 201, r.text
    uid = str(r.json()["id"])
    r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=data[:30_000])
    assert r.status_code == 201, r.text
    await drop_bucket(c, bucket)
    return uid


async def chunk_refused_at_the_quota(
    s: System, c: httpx.AsyncClient, writer: httpx.AsyncClient, bucket: str
) -> tuple[str, str]:
    """A native upload of 60,000 bytes by `c`'s owner into a new `bucket`, which went once
    its first chunk of 30,000 was sent (the upload then holds only those), the rest of the
    quota taken by a tus upload of 70,000, the bucket made again: `writer`'s second chunk
    into the upload is 413 before its body (all of the upload's length must fit again).
    Returns the upload's id and the tus upload's URL."""
    data = os.urandom(60_000)
    uid = await half_sent_into_gone_bucket(c, bucket, data)
    await wait_until(lambda: _received(s, uid, 30_000))
    big = await tus_create(c, 70_000)  # it holds its 30,000 bytes, no more
    assert big.status_code == 201, big.text
    assert_error(await tus_create(c, 1), 413, "quota_exceeded")
    await make_bucket(c, bucket)
    r = await writer.put(f"/v1/uploads/{uid}/chunks/1", content=data[30_000:])
    err = assert_error(r, 413, "quota_exceeded")
    assert err["details"] == {"quota": QUOTA, "used": 100_000, "requested": 30_000}, err
    return uid, str(big.headers["location"])


async def test_a_native_upload_into_a_deleted_bucket_takes_chunks_only_within_the_quota(
    qsys: System,
) -> None:
    bucket = f"gq-{secrets.token_hex(4)}"
    async with qsys.client(f"gq-{secrets.token_hex(4)}") as c:
        uid, _ = await chunk_refused_at_the_quota(qsys, c, c, bucket)
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert r.status_code == 409, r.text  # the chunk it refused is missing
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k")).status_code == 404


async def _received(s: System, uid: str, n: int) -> bool:
    got = await s.pool.fetchval(
        "SELECT bytes_received FROM readmodel.uploads WHERE id = $1::uuid", uid
    )
    return bool(got == n)


async def _went(
    c: httpx.AsyncClient, bucket: str, n: int, make: Callable[[str], Awaitable[str]]
) -> list[str]:
    """`n` uploads (`make` one into the bucket under a key, its id or URL) whose bucket went:
    made two at a time (two fit the quota), the bucket deleted after each two (they then
    hold only what they received, nothing) and made again by its owner at the end (more
    bytes into them must fit the quota again)."""
    made: list[str] = []
    while len(made) < n:
        await make_bucket(c, bucket)
        made += [await make(f"k{len(made) + i}") for i in range(min(2, n - len(made)))]
        await drop_bucket(c, bucket)
        await wait_until(lambda: _nothing_used(c))
    await make_bucket(c, bucket)
    return made


async def _nothing_used(c: httpx.AsyncClient) -> bool:
    r = await tus_create(c, QUOTA + 1)
    return bool(r.status_code == 413 and r.json()["error"]["details"]["used"] == 0)


@dataclass(frozen=True)
class Way:
    """How a test sends one 40 KB body into an upload (tus, or a native chunk), in steps
    whose logic is the same for both."""

    make: Callable[[httpx.AsyncClient, str, str, bytes], Awaitable[str]]  # its id or URL
    send: Callable[[httpx.AsyncClient, str, bytes], Awaitable[httpx.Response]]
    ok: int  # the status of a body taken
    untouched: Callable[[System, httpx.AsyncClient, str], Awaitable[bool]]  # kept nothing
    done: Callable[[System, list[str], int], Awaitable[bool]]  # the bodies taken are counted


async def _tus_make(c: httpx.AsyncClient, bucket: str, key: str, data: bytes) -> str:
    r = await c.post(
        "/v1/tus",
        headers={
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(filename="f.bin", bucket=bucket, key=key),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


async def _tus_send(c: httpx.AsyncClient, url: str, data: bytes) -> httpx.Response:
    return await c.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=data)


async def _tus_untouched(s: System, c: httpx.AsyncClient, url: str) -> bool:
    return bool((await c.head(url, headers=TUS)).headers["upload-offset"] == "0")


async def _tus_done(s: System, urls: list[str], size: int) -> bool:
    """Each of `urls` became a file (a tus upload completes with its last byte)."""
    n = await s.pool.fetchval(
        "SELECT count(*) FROM readmodel.files f JOIN readmodel.uploads u"
        " ON f.upload_id = u.id WHERE u.id = ANY($1::uuid[])",
        [upload_id(u) for u in urls],
    )
    return bool(n == len(urls))


async def _native_make(c: httpx.AsyncClient, bucket: str, key: str, data: bytes) -> str:
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "f.bin", "file_size": len(data), "chunk_size": len(data)}
        | {"bucket": bucket, "key": key},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _native_send(c: httpx.AsyncClient, uid: str, data: bytes) -> httpx.Response:
    return await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)


async def _native_untouched(s: System, c: httpx.AsyncClient, uid: str) -> bool:
    return await _received(s, uid, 0)


async def _native_done(s: System, ids: list[str], size: int) -> bool:
    """Each of `ids` received its one chunk (a native upload waits for its completion)."""
    return all([await _received(s, uid, size) for uid in ids])


TUS_WAY = Way(_tus_make, _tus_send, 204, _tus_untouched, _tus_done)
NATIVE_WAY = Way(_native_make, _native_send, 201, _native_untouched, _native_done)


@pytest.mark.parametrize("way", [TUS_WAY, NATIVE_WAY], ids=["tus-patches", "native-chunks"])
async def test_concurrent_bodies_into_uploads_whose_bucket_went_never_pass_the_quota(
    qsys: System, way: Way
) -> None:
    """Five uploads of 40 KB (tus, or native of one chunk) whose bucket went (holding
    nothing) take their bytes at once against 100 KB: each fits alone, all do not; at most
    two pass, the others are 413 before their body and keep what they had (nothing); usage
    ends within the quota."""
    bucket = f"gq-{secrets.token_hex(4)}"
    data = os.urandom(40_000)
    async with qsys.client(f"gq-{secrets.token_hex(4)}") as c:
        ids = await _went(c, bucket, 5, lambda key: way.make(c, bucket, key, data))
        answers = await asyncio.gather(*(way.send(c, u, data) for u in ids))
        passed = [u for u, r in zip(ids, answers, strict=True) if r.status_code == way.ok]
        for r in answers:
            if r.status_code != way.ok:
                assert_error(r, 413, "quota_exceeded")
        assert len(passed) == 2, [r.text for r in answers]
        await wait_until(lambda: way.done(qsys, passed, len(data)))
        for u in set(ids) - set(passed):
            assert await way.untouched(qsys, c, u)  # refused: nothing of it kept
        err = assert_error(await tus_create(c, QUOTA + 1), 413, "quota_exceeded")
        assert err["details"]["used"] == 80_000, err
