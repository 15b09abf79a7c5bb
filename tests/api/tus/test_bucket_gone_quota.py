"""A tus (or native) upload whose bucket went (deleted since the upload was created, or its name made
again since, by anyone) cannot complete as it is, so its declared size no longer holds the
quota (projections/usage.py storage_used). Its bytes are kept: completing it once its owner
makes the bucket again asks the quota for them afresh (api/completion.py), 413 when they no
longer fit, so the freed room is never handed out twice."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.documented import assert_documented
from tests.api.tus.test_bucket_gone import OCTETS, TUS, drop_bucket, make_bucket, meta, upload_id
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUOTA = 100_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def qsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap, quota_bytes=QUOTA) as s:
        yield s


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


async def test_an_upload_into_a_deleted_bucket_holds_no_quota_until_it_completes(
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

        async def bucket_listed_gone() -> bool:
            return bool(
                await qsys.pool.fetchval(
                    "SELECT deleted_at IS NOT NULL FROM readmodel.buckets WHERE name = $1", bucket
                )
            )

        await wait_until(bucket_listed_gone)
        # The upload can no longer complete as it is: its 60,000 bytes are free again.
        r = await tus_create(c, 50_000)
        assert r.status_code == 201, r.text
        other = r.headers["location"]
        # The bucket made again: the upload completes only if its bytes fit the quota now.
        await make_bucket(c, bucket)
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "20000"}, content=data[20_000:])
        err = error(r, 413, "quota_exceeded")
        assert err["details"] == {"quota": QUOTA, "used": 50_000, "requested": 60_000}, err
        r = await c.head(url, headers=TUS)  # every byte kept, not a file
        assert r.headers["upload-offset"] == str(len(data)), r.headers
        view = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert view["status"] == "IN_PROGRESS" and view["file_id"] is None, view
        assert (await c.delete(other, headers=TUS)).status_code == 204  # room made

        async def other_listed_aborted() -> bool:
            status = await qsys.pool.fetchval(
                "SELECT status FROM readmodel.uploads WHERE id = $1::uuid", upload_id(other)
            )
            return bool(status == "ABORTED")

        await wait_until(other_listed_aborted)
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": str(len(data))}, content=b"")
        assert r.status_code == 204, r.text
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k")).content == data
        # Counted once, as the file it became.
        err = error(await tus_create(c, 40_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 60_000, err


async def test_a_native_complete_after_the_bucket_is_back_asks_the_quota_again(
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
        for i in range(2):
            chunk = data[i * 30_000 : (i + 1) * 30_000]
            assert (await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=chunk)).status_code == 201
        await drop_bucket(c, bucket)
        r = await tus_create(c, 50_000)  # the upload holds nothing now
        assert r.status_code == 201, r.text
        await make_bucket(c, bucket)
        r = await c.post(f"/v1/uploads/{uid}/complete")
        err = error(r, 413, "quota_exceeded")
        assert err["details"] == {"quota": QUOTA, "used": 50_000, "requested": 60_000}, err
        await assert_documented(c, "post", "/v1/uploads/{upload_id}/complete", r)
        view = (await c.get(f"/v1/uploads/{uid}")).json()
        assert view["status"] == "IN_PROGRESS" and view["file_id"] is None, view
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k")).status_code == 404
