"""The native chunked upload API end to end, through the real bus, store and projections."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import orjson

from bus.kafka.clients import make_consumer
from tests.system import System, wait_until

CHUNK = 64 * 1024


async def create(c: httpx.AsyncClient, data: bytes, chunk: int = CHUNK, **extra: object) -> dict:
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "data.bin", "file_size": len(data), "chunk_size": chunk, **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


def pieces(data: bytes, chunk: int = CHUNK) -> list[bytes]:
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


async def test_upload_interrupted_resumed_completed_downloaded(system: System) -> None:
    data = os.urandom(CHUNK * 5 + 123)
    async with system.client("alice") as c:
        up = await create(c, data, sha256=hashlib.sha256(data).hexdigest())
        assert up["total_chunks"] == 6 and up["status"] == "INITIATED"
        parts = pieces(data)
        # "interrupted": only some chunks arrive, out of order
        for i in (4, 0, 2):
            r = await c.put(f"/v1/uploads/{up['id']}/chunks/{i}", content=parts[i])
            assert r.status_code == 201, r.text
        r = await c.get(f"/v1/uploads/{up['id']}/missing-chunks")
        assert r.json()["missing_chunks"] == [1, 3, 5]
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert r.status_code == 409 and r.json()["error"]["details"]["missing_chunks"] == [1, 3, 5]
        for i in (1, 3, 5):
            r = await c.put(
                f"/v1/uploads/{up['id']}/chunks/{i}",
                content=parts[i],
                headers={"X-Chunk-SHA256": hashlib.sha256(parts[i]).hexdigest()},
            )
            assert r.status_code == 201, r.text
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        r = await c.get(f"/v1/files/{done['file_id']}/content")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-length"] == str(len(data))
        meta = (await c.get(f"/v1/files/{done['file_id']}")).json()
        assert meta["size"] == len(data) and meta["name"] == "data.bin"

        async def listed() -> dict | None:
            r = await c.get("/v1/uploads")
            items = [
                u for u in r.json()["items"] if u["id"] == up["id"] and u["status"] == "COMPLETED"
            ]
            return items[0] if items else None

        row = await wait_until(listed)
        assert row["bytes_received"] == len(data) and row["file_id"] == done["file_id"]
        r = await c.get(f"/v1/uploads/{up['id']}")
        assert r.json()["status"] == "COMPLETED" and r.json()["missing_chunks"] == []

        since = time.monotonic()

        async def caught_up() -> bool:
            # The lag gauges may be up to 5 s old (api/routes/ops.py): only figures read
            # after the upload was listed count.
            asked = time.monotonic()
            text = (await c.get("/metrics")).text
            ages = [
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("cairn_lag_gauges_age_seconds ")
            ]
            return (
                len(ages) == 1
                and ages[0] < asked - since
                and 'cairn_projection_lag_events{projection="uploads"} 0.0' in text
                and 'cairn_projection_lag_events{projection="files"} 0.0' in text
                and "cairn_relay_lag_events 0.0" in text
            )

        await wait_until(caught_up)


async def test_events_reach_the_topics(system: System) -> None:
    data = os.urandom(CHUNK + 1)
    async with system.client("alice") as c:
        up = await create(c, data)
        for i, p in enumerate(pieces(data)):
            assert (await c.put(f"/v1/uploads/{up['id']}/chunks/{i}", content=p)).status_code == 201
        file_id = (await c.post(f"/v1/uploads/{up['id']}/complete")).json()["file_id"]
    s = system.settings
    consumer = make_consumer(s, s.topic("uploads"), s.topic("files"), group_id=None)
    await consumer.start()
    seen: list[dict] = []
    try:

        async def got_all() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                seen.extend(
                    {"key": r.key.decode(), "topic": r.topic, **orjson.loads(r.value)} for r in recs
                )
            return (
                any(e["type"] == "FileCreated" for e in seen)
                and sum(e["type"] == "UploadChunkStored" for e in seen) == 2
            )

        await wait_until(got_all)
    finally:
        await consumer.stop()
    uploads = [e for e in seen if e["stream_id"] == f"upload-{up['id']}"]
    assert [e["type"] for e in uploads][:1] == ["UploadInitiated"]
    assert all(e["key"] == up["id"] and e["topic"] == s.topic("uploads") for e in uploads)
    assert [e["version"] for e in uploads] == sorted(e["version"] for e in uploads)
    files = [e for e in seen if e["stream_id"] == f"file-{file_id}"]
    assert files[0]["type"] == "FileCreated" and files[0]["owner"] == "alice"


async def test_other_users_ids_are_not_found(system: System) -> None:
    data = os.urandom(100)
    async with system.client("alice") as alice, system.client("bob") as bob:
        up = await create(alice, data)
        assert (
            await alice.put(f"/v1/uploads/{up['id']}/chunks/0", content=data)
        ).status_code == 201
        file_id = (await alice.post(f"/v1/uploads/{up['id']}/complete")).json()["file_id"]
        for method, path in [
            ("GET", f"/v1/uploads/{up['id']}"),
            ("GET", f"/v1/uploads/{up['id']}/missing-chunks"),
            ("POST", f"/v1/uploads/{up['id']}/complete"),
            ("DELETE", f"/v1/uploads/{up['id']}"),
            ("PUT", f"/v1/uploads/{up['id']}/chunks/0"),
            ("GET", f"/v1/files/{file_id}"),
            ("GET", f"/v1/files/{file_id}/content"),
            ("DELETE", f"/v1/files/{file_id}"),
        ]:
            r = await bob.request(method, path, content=data if method == "PUT" else None)
            assert r.status_code == 404, (method, path, r.text)
            assert data.hex() not in r.text
        # alice still has everything
        assert (await alice.get(f"/v1/files/{file_id}/content")).content == data


async def test_completing_an_aborted_upload_with_missing_chunks_is_refused(
    system: System,
) -> None:
    """The completion reads the bytes' type only when they are all there: an aborted
    upload with holes gets the domain's refusal, never a server error."""
    data = os.urandom(CHUNK * 3)
    async with system.client("alice") as c:
        up = await create(c, data)
        put = await c.put(f"/v1/uploads/{up['id']}/chunks/0", content=data[:CHUNK])
        assert put.status_code == 201, put.text
        assert (await c.delete(f"/v1/uploads/{up['id']}")).status_code == 200
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "upload_not_active"


async def test_a_chunk_with_two_x_chunk_sha256_is_refused_and_stores_nothing(
    system: System,
) -> None:
    """X-Chunk-SHA256 twice: the first was checked and the second ignored, so a chunk with
    its right digest first and a wrong one after was stored (and with the wrong one first,
    refused as a mismatch). Which one counts is a guess: 400, and nothing is stored."""
    data = os.urandom(1000)
    right = hashlib.sha256(data).hexdigest()
    async with system.client("alice") as c:
        up = await create(c, data, chunk=1000)
        url = f"/v1/uploads/{up['id']}/chunks/0"
        for twice in ((right, "0" * 64), ("0" * 64, right), (right, right)):
            r = await c.put(url, content=data, headers=[("X-Chunk-SHA256", d) for d in twice])
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["code"] == "invalid_sha256" and err["details"] == {
                "header": "X-Chunk-SHA256"
            }, err
        state = (await c.get(f"/v1/uploads/{up['id']}")).json()
        assert state["missing_chunks"] == [0] and state["status"] == "INITIATED", state
        # Once, it is stored.
        r = await c.put(url, content=data, headers={"X-Chunk-SHA256": right})
        assert r.status_code == 201, r.text
