"""Zero-byte uploads under a quota hold nothing past their request: a tus upload (with
Upload-Length: 0, or its length declared 0 later, or an empty body sent chunked), an
object PUT (empty, or empty and chunked) and a native upload each leave no row in
api.quota_reservations once answered, and their owner's whole quota is still free. Whole
system: real Postgres, broker and API."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests.api.quota import QUOTA
from tests.api.tus.test_bucket_gone import OCTETS, TUS
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def nothing() -> AsyncIterator[bytes]:
    """An empty body without Content-Length (httpx sends it chunked)."""
    for data in ():
        yield data


async def tus_length_0(c: httpx.AsyncClient) -> None:
    r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "0"})
    assert r.status_code == 201, r.text
    assert r.headers["upload-offset"] == "0", r.headers


async def tus_declared_0(c: httpx.AsyncClient) -> None:
    r = await c.post("/v1/tus", headers={**TUS, "Upload-Defer-Length": "1"})
    assert r.status_code == 201, r.text
    r = await c.patch(
        r.headers["location"], headers={**OCTETS, "Upload-Offset": "0", "Upload-Length": "0"}
    )
    assert r.status_code == 204, r.text


async def tus_chunked_nothing(c: httpx.AsyncClient) -> None:
    r = await c.post("/v1/tus", headers={**OCTETS, "Upload-Defer-Length": "1"}, content=nothing())
    assert r.status_code == 201, r.text
    assert r.headers["upload-offset"] == "0", r.headers
    # And a PATCH of nothing, chunked, into it.
    r = await c.patch(
        r.headers["location"], headers={**OCTETS, "Upload-Offset": "0"}, content=nothing()
    )
    assert r.status_code == 204, r.text


async def object_put(c: httpx.AsyncClient, body: bytes | AsyncIterator[bytes]) -> None:
    bucket = f"z-{secrets.token_hex(4)}"
    assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    r = await c.put(f"/v1/buckets/{bucket}/objects/empty", content=body)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 0, r.text


async def object_empty(c: httpx.AsyncClient) -> None:
    await object_put(c, b"")


async def object_chunked_nothing(c: httpx.AsyncClient) -> None:
    await object_put(c, nothing())


async def native(c: httpx.AsyncClient) -> None:
    r = await c.post(
        "/v1/uploads", json={"file_name": "empty.bin", "file_size": 0, "chunk_size": 4096}
    )
    assert r.status_code == 201, r.text
    r = await c.post(f"/v1/uploads/{r.json()['id']}/complete")
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 0, r.text


UPLOADS: dict[str, Callable[[httpx.AsyncClient], Awaitable[None]]] = {
    "tus-length-0": tus_length_0,
    "tus-declared-0": tus_declared_0,
    "tus-chunked-nothing": tus_chunked_nothing,
    "object-empty": object_empty,
    "object-chunked-nothing": object_chunked_nothing,
    "native": native,
}


@pytest.mark.parametrize("kind", list(UPLOADS))
async def test_a_zero_byte_upload_holds_nothing_past_its_request(qsys: System, kind: str) -> None:
    owner = f"zb-{secrets.token_hex(4)}"
    async with qsys.client(owner) as c:
        await UPLOADS[kind](c)
        rows = await qsys.pool.fetch(
            "SELECT bytes, target, completing, file_id, version FROM api.quota_reservations"
            " WHERE owner = $1",
            owner,
        )
        assert rows == [], rows
        # The whole quota is left.
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": str(QUOTA)})
        assert r.status_code == 201, r.text
