"""Native completion without a re-hash (issue 13): chunks PUT in order through this API
process feed the upload's running sha256 (api/running_digests.py), so `complete` does not
read the file back. Out of order, or with a declared sha256 (verified exactly against the
stored bytes), the stored bytes are hashed as before; the file's sha256 is right always."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest

import api.completion as completion
from tests.system import System

CHUNK = 64 * 1024


@pytest.fixture
def rehashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The digests completion computed by reading the stored bytes (the API runs here)."""
    seen: list[str] = []
    real = completion.hash_manifest

    async def counting(*args: Any, **kw: Any) -> str:
        seen.append(digest := await real(*args, **kw))
        return digest

    monkeypatch.setattr(completion, "hash_manifest", counting)
    return seen


async def upload(
    c: httpx.AsyncClient, data: bytes, order: list[int], sha256: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"file_name": "f.bin", "file_size": len(data), "chunk_size": CHUNK}
    if sha256 is not None:
        body["sha256"] = sha256
    r = await c.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for i in order:
        part = data[i * CHUNK : (i + 1) * CHUNK]
        r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=part)
        assert r.status_code in (200, 201), r.text
    return await c.post(f"/v1/uploads/{uid}/complete")


async def check_file(c: httpx.AsyncClient, r: httpx.Response, data: bytes) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    fid = r.json()["file_id"]
    assert (await c.get(f"/v1/files/{fid}")).json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert (await c.get(f"/v1/files/{fid}/content")).content == data


async def test_chunks_in_order_complete_without_reading_back(
    shared_system: System, rehashed: list[str]
) -> None:
    data = os.urandom(3 * CHUNK + 17)
    async with shared_system.client("run-in-order") as c:
        r = await upload(c, data, [0, 1, 1, 2, 3])  # a chunk PUT twice: a replay
        await check_file(c, r, data)
    assert rehashed == []


async def test_a_refused_chunk_does_not_break_the_running_digest(
    shared_system: System, rehashed: list[str]
) -> None:
    data = os.urandom(2 * CHUNK + 5)
    async with shared_system.client("run-refused") as c:
        r = await c.post(
            "/v1/uploads", json={"file_name": "f", "file_size": len(data), "chunk_size": CHUNK}
        )
        uid = r.json()["id"]
        assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data[:CHUNK])).is_success
        bad = await c.put(
            f"/v1/uploads/{uid}/chunks/1",
            content=os.urandom(CHUNK),
            headers={"X-Chunk-SHA256": hashlib.sha256(b"x").hexdigest()},
        )
        assert bad.status_code == 400
        assert (
            await c.put(f"/v1/uploads/{uid}/chunks/1", content=data[CHUNK : 2 * CHUNK])
        ).is_success
        assert (await c.put(f"/v1/uploads/{uid}/chunks/2", content=data[2 * CHUNK :])).is_success
        await check_file(c, await c.post(f"/v1/uploads/{uid}/complete"), data)
    assert rehashed == []


async def test_chunks_out_of_order_are_hashed_from_the_store(
    shared_system: System, rehashed: list[str]
) -> None:
    data = os.urandom(3 * CHUNK + 1)
    async with shared_system.client("run-shuffled") as c:
        r = await upload(c, data, [1, 0, 3, 2])
        await check_file(c, r, data)
    assert rehashed == [hashlib.sha256(data).hexdigest()]


async def test_a_declared_sha256_is_verified_against_the_stored_bytes(
    shared_system: System, rehashed: list[str]
) -> None:
    data = os.urandom(2 * CHUNK)
    async with shared_system.client("run-declared") as c:
        r = await upload(c, data, [0, 1], sha256=hashlib.sha256(data).hexdigest())
        await check_file(c, r, data)
        assert rehashed == [hashlib.sha256(data).hexdigest()]
        r = await upload(c, data[:CHUNK] + os.urandom(CHUNK), [0, 1], sha256="0" * 64)
        assert r.status_code == 422 and r.json()["error"]["code"] == "checksum_mismatch"
