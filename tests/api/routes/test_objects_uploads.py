"""Uploads that name a bucket and a key become that object when complete: native
(`bucket` + `key`) and tus (`Upload-Metadata` `bucket` and `key`), created or replacing the
key's current version, through the same PutObject the object PUT sends."""

from __future__ import annotations

import base64
import hashlib
import secrets

import httpx
import pytest

from domain.files.keys import object_file_id
from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

TUS = {"Tus-Resumable": "1.0.0"}


def md(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


async def native_upload(c: httpx.AsyncClient, data: bytes, **fields: object) -> httpx.Response:
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "f.bin", "file_size": len(data), "chunk_size": len(data), **fields},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
    return await c.post(f"/v1/uploads/{uid}/complete")


async def test_a_native_upload_becomes_the_object(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        key = "up/../loaded ü.bin"
        first = secrets.token_bytes(3000)
        r = await native_upload(c, first, bucket=b, key=key)
        assert r.status_code == 200, r.text
        assert r.json()["file_id"] == object_file_id(b, key)
        g = await c.get(opath(b, key))
        assert g.status_code == 200 and g.content == first
        assert g.headers["etag"] == f'"{hashlib.sha256(first).hexdigest()}"'

        # Another upload to the key replaces it (the same content as a plain file would be
        # deduplicated: an upload into a key never is).
        second = secrets.token_bytes(2000)
        r = await native_upload(
            c, second, bucket=b, key=key, sha256=hashlib.sha256(second).hexdigest()
        )
        assert r.status_code == 200, r.text
        assert (await c.get(opath(b, key))).content == second
        # A PUT after it wins over it, and nothing brings the upload's bytes back.
        assert (await c.put(opath(b, key), content=b"put")).status_code == 200
        assert (await c.get(opath(b, key))).content == b"put"
        assert await object_events(shared_system.pool, b, key) == [
            "FileCreated",
            "FileReplaced",
            "FileReplaced",
        ]


async def test_bad_upload_keys(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        body = {"file_name": "f", "file_size": 1}
        r = await c.post("/v1/uploads", json={**body, "key": "k"})
        assert_error(r, 400, "key_needs_bucket")
        r = await c.post("/v1/uploads", json={**body, "bucket": b, "key": "a\x00b"})
        assert_error(r, 400, "invalid_key")
        r = await c.post("/v1/uploads", json={**body, "bucket": b, "key": "é" * 513})
        assert_error(r, 400, "invalid_key")
        r = await c.post("/v1/uploads", json={**body, "bucket": b, "key": ""})
        assert r.status_code == 400, r.text
    async with shared_system.client(user()) as o:
        r = await o.post("/v1/uploads", json={**body, "bucket": b, "key": "k"})
        assert_error(r, 404, "bucket_not_found")


async def test_a_tus_upload_becomes_the_object(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        key = "tus/x.txt"
        data = b"hello from tus" * 100
        r = await c.post(
            "/v1/tus",
            headers={
                **TUS,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": md(
                    filename="x.txt", filetype="text/plain", bucket=b, key=key, author="ann"
                ),
                "Content-Type": "application/offset+octet-stream",
            },
            content=data,
        )
        assert r.status_code == 201, r.text
        assert r.headers["upload-offset"] == str(len(data))
        g = await c.get(opath(b, key))
        assert g.status_code == 200 and g.content == data
        f = await c.get(f"/v1/files/{object_file_id(b, key)}")
        assert (f.json()["bucket"], f.json()["key"]) == (b, key)
        # The entries that named the upload are the object's key, bucket and type, not
        # its user metadata (an S3 PUT of the same object has no x-amz-meta-filename).
        assert f.json()["metadata"] == {"author": "ann"}
        amz = {k: v for k, v in g.headers.items() if k.startswith("x-amz-meta-")}
        assert amz == {"x-amz-meta-author": "ann"}
        assert g.headers["content-type"].startswith("text/plain")
        # tus HEAD still echoes every entry the upload was created with.
        head = await c.head(f"/v1/tus/{r.headers['location'].rsplit('/', 1)[-1]}", headers=TUS)
        assert head.status_code == 200, head.text
        assert "filename " in head.headers["upload-metadata"]
        assert "author " in head.headers["upload-metadata"]
