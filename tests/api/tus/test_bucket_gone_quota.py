"""A tus (or native) upload whose bucket went (deleted since the upload was created, or its
name made again since, by anyone) cannot complete as it is, so it holds only the bytes it
received, not its declared size (projections/usage.py WENT). Its bytes are kept and count;
more bytes into it, once its owner made the bucket again, must fit the quota again (413
before the body when they do not), so the freed room is never handed out twice."""

from __future__ import annotations

import os
import secrets

import httpx
import pytest

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


def error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


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
        error(await tus_create(c, 50_000), 413, "quota_exceeded")  # held: 60,000 of 100,000
        await drop_bucket(c, bucket)
        await wait_until(lambda: _received(qsys, upload_id(url), 20_000))
        # The upload can no longer complete as it is: it holds the 20,000 bytes it has,
        # and the rest of its length is free again (at once: read from the event store).
        r = await tus_create(c, 50_000)
        assert r.status_code == 201, r.text
        other = r.headers["location"]
        err = error(await tus_create(c, 30_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 70_000, err
        # The bucket made again: more bytes into the upload must fit the quota again, all
        # of its length beside everything else. 413 before the body; what it has, kept.
        await make_bucket(c, bucket)
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "20000"}, content=data[20_000:])
        err = error(r, 413, "quota_exceeded")
        assert err["details"] == {"quota": QUOTA, "used": 50_000, "requested": 60_000}, err
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
        err = error(await tus_create(c, 40_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 60_000, err


async def test_a_native_upload_into_a_deleted_bucket_takes_chunks_only_within_the_quota(
    qsys: System,
) -> None:
    data = os.urandom(60_000)
    bucket = f"gq-{secrets.token_hex(4)}"
    async with qsys.client(f"gq-{secrets.token_hex(4)}") as c:
        await make_bucket(c, bucket)
        r = await c.post(
            "/v1/uploads",
            json={"file_name": "f.bin", "file_size": len(data), "chunk_size": 30_000}
            | {"bucket": bucket, "key": "k"},
        )
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        assert (
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=data[:30_000])
        ).status_code == 201
        await drop_bucket(c, bucket)
        await wait_until(lambda: _received(qsys, uid, 30_000))
        r = await tus_create(c, 70_000)  # it holds its 30,000 bytes, no more
        assert r.status_code == 201, r.text
        error(await tus_create(c, 1), 413, "quota_exceeded")
        await make_bucket(c, bucket)
        r = await c.put(f"/v1/uploads/{uid}/chunks/1", content=data[30_000:])
        err = error(r, 413, "quota_exceeded")
        assert err["details"] == {"quota": QUOTA, "used": 70_000, "requested": 60_000}, err
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert r.status_code == 409, r.text  # the chunk it refused is missing
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k")).status_code == 404


async def _received(s: System, uid: str, n: int) -> bool:
    got = await s.pool.fetchval(
        "SELECT bytes_received FROM readmodel.uploads WHERE id = $1::uuid", uid
    )
    return bool(got == n)
