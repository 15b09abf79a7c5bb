"""A tus upload into a bucket key (Upload-Metadata `key`) shows the key in its Cairn JSON
(GET /v1/uploads/{id} and GET /v1/uploads), as a native one does; a tus upload without a
key shows null."""

from __future__ import annotations

import pytest

from tests.api.answers import make_bucket, user
from tests.api.routes.test_uploads_key import uploads_show_key
from tests.api.tus.test_stored_headers import OCTETS, md
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("key", ["js/app ü.js", None])
async def test_a_tus_upload_shows_its_key(shared_system: System, key: str | None) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        meta = {"filename": "app.js", "bucket": b} | ({"key": key} if key else {})
        body = b"console.log('hi');\n"
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Length": str(len(body)), "Upload-Metadata": md(meta)},
            content=body,
        )
        assert r.status_code == 201, r.text
        uid = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        await uploads_show_key(c, uid, key)
