"""An upload's own JSON names the object it becomes: `key` next to `bucket` in
GET /v1/uploads/{id} (from the read model, or the event stream while that lags) and in
each item of GET /v1/uploads; null for an upload that becomes a plain file."""

from __future__ import annotations

import httpx
import pytest

from tests.api.answers import make_bucket, user
from tests.api.routes.test_objects_uploads import native_upload
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def uploads_show_key(c: httpx.AsyncClient, uid: str, key: str | None) -> None:
    """GET /v1/uploads/{id} shows `key`, and so does its item of GET /v1/uploads once the
    read model has the upload completed (the single upload answers from it from then on)."""
    one = await c.get(f"/v1/uploads/{uid}")
    assert one.status_code == 200 and one.json()["key"] == key, one.text

    async def listed() -> bool:
        items = (await c.get("/v1/uploads")).json()["items"]
        return any(i["id"] == uid and i["status"] == "COMPLETED" for i in items)

    await wait_until(listed)
    items = (await c.get("/v1/uploads")).json()["items"]
    assert [i["key"] for i in items if i["id"] == uid] == [key]
    one = await c.get(f"/v1/uploads/{uid}")
    assert one.status_code == 200 and one.json()["key"] == key, one.text


async def test_a_native_upload_into_a_key_shows_it_and_a_plain_one_null(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        key = "docs/ü 名/report.pdf"
        r = await native_upload(c, b"%PDF-1.7", bucket=b, key=key)
        assert r.status_code == 200, r.text
        await uploads_show_key(c, r.json()["upload_id"], key)
        r = await native_upload(c, b"plain bytes", bucket=b)
        assert r.status_code == 200, r.text
        await uploads_show_key(c, r.json()["upload_id"], None)


async def test_an_uploads_json_shows_its_key_before_its_bytes(shared_system: System) -> None:
    """Right after the create, before any bytes: the single upload (read model or event
    stream) and then the listing show the key, null for an upload without one."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.post(
            "/v1/uploads", json={"file_name": "f", "file_size": 3, "bucket": b, "key": "a/k"}
        )
        assert r.status_code == 201, r.text
        keyed = r.json()["id"]
        one = await c.get(f"/v1/uploads/{keyed}")
        assert one.status_code == 200 and one.json()["key"] == "a/k", one.text
        r = await c.post("/v1/uploads", json={"file_name": "g", "file_size": 3, "bucket": b})
        assert r.status_code == 201, r.text
        plain = r.json()["id"]
        one = await c.get(f"/v1/uploads/{plain}")
        assert one.status_code == 200 and one.json()["key"] is None, one.text

        async def listed() -> bool:
            return (await c.get("/v1/uploads")).json()["total"] == 2

        await wait_until(listed)
        items = (await c.get("/v1/uploads")).json()["items"]
        assert {i["id"]: i["key"] for i in items} == {keyed: "a/k", plain: None}
