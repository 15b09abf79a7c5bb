"""POST /v1/uploads `headers`: an upload into a bucket key gives the object it becomes S3's
stored headers (Cache-Control, Content-Encoding, ...), served by GET and HEAD as an object
PUT's are; bad ones, and any without a key, are 400 invalid_header and create nothing."""

from __future__ import annotations

import gzip
import hashlib

import httpx
import pytest

from domain.files.headers import MAX_HEADER_BYTES
from domain.files.keys import object_file_id
from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects_headers import raw_get
from tests.api.routes.test_objects_uploads import native_upload
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

BODY = gzip.compress(b"body { color: teal }\n" * 200)


async def test_a_native_upload_into_a_key_serves_its_stored_headers(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        key = "css/site.css"
        sent = {"Cache-Control": "public, max-age=60", "content-ENCODING": "gzip"}
        r = await native_upload(c, BODY, bucket=b, key=key, content_type="text/css", headers=sent)
        assert r.status_code == 200, r.text
        got, raw = await raw_get(c, opath(b, key))
        assert got.status_code == 200 and raw == BODY  # the stored bytes, never decoded
        assert got.headers["cache-control"] == "public, max-age=60"
        assert got.headers["content-encoding"] == "gzip"
        assert got.headers["etag"] == f'"{hashlib.sha256(BODY).hexdigest()}"'
        h = await c.head(opath(b, key))
        assert h.headers["cache-control"] == "public, max-age=60"
        assert h.headers["content-encoding"] == "gzip"
        f = await c.get(f"/v1/files/{object_file_id(b, key)}")
        assert f.json()["headers"] == {
            "cache-control": "public, max-age=60",
            "content-encoding": "gzip",
        }
        # The upload's own JSON shows them too, {} for one without: the single upload and
        # the listing (the read model, once projected).
        await uploads_show(
            c,
            r.json()["upload_id"],
            {"cache-control": "public, max-age=60", "content-encoding": "gzip"},
        )
        # Another upload into the key without them: the new version has none (as a PUT).
        r = await native_upload(c, b"plain", bucket=b, key=key)
        assert r.status_code == 200, r.text
        got, raw = await raw_get(c, opath(b, key))
        assert raw == b"plain" and "content-encoding" not in got.headers
        assert got.headers["cache-control"] != "public, max-age=60"


async def uploads_show(c: httpx.AsyncClient, uid: str, headers: dict[str, str]) -> None:
    """GET /v1/uploads/{id} shows `headers`, and so does its item of GET /v1/uploads once
    the read model has it (the single upload answers from the read model from then on)."""
    one = await c.get(f"/v1/uploads/{uid}")
    assert one.status_code == 200 and one.json()["headers"] == headers, one.text

    async def listed() -> bool:
        items = (await c.get("/v1/uploads")).json()["items"]
        return any(i["id"] == uid and i["status"] == "COMPLETED" for i in items)

    await wait_until(listed)
    items = (await c.get("/v1/uploads")).json()["items"]
    assert [i["headers"] for i in items if i["id"] == uid] == [headers]
    one = await c.get(f"/v1/uploads/{uid}")
    assert one.status_code == 200 and one.json()["headers"] == headers, one.text


async def test_an_uploads_json_shows_its_headers_before_its_bytes(
    shared_system: System,
) -> None:
    """Right after the create, before any bytes: the single upload (from the read model,
    or the event stream while that lags) and then the listing show the normalised
    headers; an upload without any shows {}."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        sent = {"Cache-Control": "no-store", "Content-Disposition": "inline"}
        body = {"file_name": "f", "file_size": 3, "bucket": b, "key": "k", "headers": sent}
        r = await c.post("/v1/uploads", json=body)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        want = {"cache-control": "no-store", "content-disposition": "inline"}
        one = await c.get(f"/v1/uploads/{uid}")
        assert one.status_code == 200 and one.json()["headers"] == want, one.text
        r = await c.post("/v1/uploads", json={"file_name": "g", "file_size": 3})
        plain = r.json()["id"]
        assert (await c.get(f"/v1/uploads/{plain}")).json()["headers"] == {}

        async def listed() -> bool:
            return (await c.get("/v1/uploads")).json()["total"] == 2

        await wait_until(listed)
        items = (await c.get("/v1/uploads")).json()["items"]
        assert {i["id"]: i["headers"] for i in items} == {uid: want, plain: {}}


@pytest.mark.parametrize(
    ("headers", "at_fault"),
    [
        ({"X-Frame-Options": "DENY"}, "X-Frame-Options"),
        ({"Cache-Control": "max-age=1\r\nSet-Cookie: a=1"}, "cache-control"),
        ({"Expires": "x" * (MAX_HEADER_BYTES + 1)}, "expires"),
        ({"Cache-Control": "no-cache", "cache-control": "no-store"}, "cache-control"),
    ],
)
async def test_bad_headers_are_400_and_create_nothing(
    shared_system: System, headers: dict[str, str], at_fault: str
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        body = {"file_name": "f", "file_size": 1, "bucket": b, "key": "k", "headers": headers}
        err = assert_error(await c.post("/v1/uploads", json=body), 400, "invalid_header")
        assert err["details"] == {"header": at_fault, "max_bytes": MAX_HEADER_BYTES}
        listed = await c.get("/v1/uploads")
        assert listed.status_code == 200 and listed.json()["total"] == 0


async def test_headers_without_a_key_are_400(shared_system: System) -> None:
    """A plain file keeps no stored headers (S3's are an object version's): refused, not
    dropped, so nobody believes a file got a Content-Encoding it is never served with."""
    async with shared_system.client(user()) as c:
        body = {"file_name": "f.gz", "file_size": 1, "headers": {"Content-Encoding": "gzip"}}
        err = assert_error(await c.post("/v1/uploads", json=body), 400, "invalid_header")
        assert err["details"] == {"header": "content-encoding", "max_bytes": MAX_HEADER_BYTES}
        assert "key" in err["message"]
        assert (await c.get("/v1/uploads")).json()["total"] == 0
        # Content the caller has (in the read model, which answers a deduplicated create):
        # refused too, never answered with that file.
        assert (await native_upload(c, b"x")).status_code == 200

        async def listed() -> bool:
            return bool((await c.get("/v1/files")).json()["items"])

        await wait_until(listed)
        sha = hashlib.sha256(b"x").hexdigest()
        body = {"file_name": "x", "file_size": 1, "sha256": sha}
        r = await c.post("/v1/uploads", json={**body, "headers": {"Expires": "0"}})
        assert_error(r, 400, "invalid_header")
        r = await c.post("/v1/uploads", json=body)
        assert r.status_code == 201 and r.json().get("deduplicated") is True, r.text
