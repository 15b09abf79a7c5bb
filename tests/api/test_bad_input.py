"""Bad input gets a clear 4xx in the one error shape, and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets

import httpx
import pytest

from tests.api.answers import user
from tests.api.documented import assert_documented
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 1024


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["request_id"] == r.headers["x-request-id"]
    if code:
        assert body["error"]["code"] == code, body
    return body


async def new_upload(c: httpx.AsyncClient, size: int, **extra: object) -> dict:
    r = await c.post(
        "/v1/uploads", json={"file_name": "f.bin", "file_size": size, "chunk_size": CHUNK, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def missing(c: httpx.AsyncClient, uid: str) -> list[int]:
    return (await c.get(f"/v1/uploads/{uid}/missing-chunks")).json()["missing_chunks"]


async def test_auth_is_required_and_checked(shared_system: System) -> None:
    async with shared_system.client(None) as anon:
        assert_error(await anon.get("/v1/uploads"), 401, "unauthorized")
        assert_error(
            await anon.get("/v1/uploads", headers={"Authorization": "Bearer nonsense"}),
            401,
            "invalid_token",
        )
        forged = shared_system.token("alice").rsplit(".", 1)[0] + ".AAAA"
        assert_error(
            await anon.get("/v1/uploads", headers={"Authorization": f"Bearer {forged}"}),
            401,
            "invalid_token",
        )
        assert_error(await anon.get("/v1/uploads", headers={"X-API-Key": "nope"}), 401)
        r = await anon.get("/health")
        assert r.status_code == 200


async def test_request_id_is_echoed_and_unknown_routes_use_the_error_shape(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        r = await c.get("/v1/nowhere", headers={"X-Request-ID": "my-id-123"})
        body = assert_error(r, 404)
        assert body["request_id"] == "my-id-123"
        r = await c.get("/v1/uploads", headers={"X-Request-ID": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces"
        assert_error(await c.get("/v1/uploads/not-a-uuid"), 404, "upload_not_found")
        assert_error(
            await c.get(f"/v1/files/{'0' * 8}-0000-0000-0000-{'0' * 12}"), 404, "file_not_found"
        )


@pytest.mark.parametrize(
    "body, code",
    [
        ({"file_name": "a", "file_size": -1}, "invalid_file_size"),
        ({"file_name": "", "file_size": 10}, "invalid_file_name"),
        ({"file_name": "a\x00b", "file_size": 10}, "invalid_file_name"),
        ({"file_name": "a", "file_size": 10, "chunk_size": 0}, "invalid_chunk_size"),
        ({"file_name": "a", "file_size": 10, "sha256": "xyz"}, "invalid_sha256"),
        ({"file_name": "a", "file_size": "ten"}, "validation_error"),
        ({"file_size": 10}, "validation_error"),
        # Metadata a file could not hold (8 KiB at most), even in many small values: before,
        # it was accepted and its completion's reply was too big for the bus.
        (
            {
                "file_name": "a",
                "file_size": 10,
                "metadata": {f"k{i}": "v" * 4096 for i in range(900)},
            },
            "invalid_metadata",
        ),
        ({"file_name": "a", "file_size": 10, "metadata": {"k": "v" * 9000}}, "invalid_metadata"),
    ],
)
async def test_create_refuses_bad_bodies(shared_system: System, body: dict, code: str) -> None:
    async with shared_system.client(user()) as c:
        assert_error(await c.post("/v1/uploads", json=body), 400, code)
        assert (await c.get("/v1/uploads")).json()["total"] == 0


async def test_create_into_a_bucket_not_mine_is_a_documented_404(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post(
            "/v1/uploads", json={"file_name": "a", "file_size": 1, "bucket": "no-such-bucket"}
        )
        assert_error(r, 404, "bucket_not_found")
        await assert_documented(c, "post", "/v1/uploads", r)


async def test_create_refuses_malformed_json_and_huge_sizes(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post(
            "/v1/uploads", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_error(r, 400)
        r = await c.post("/v1/uploads", json={"file_name": "a", "file_size": 1 << 62})
        assert_error(r, 413, "upload_too_large")


async def test_sizes_past_2_gib_are_64_bit(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        size = 5 * (1 << 30) + 7
        r = await c.post(
            "/v1/uploads", json={"file_name": "big", "file_size": size, "chunk_size": 8 << 20}
        )
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["total_chunks"] == 641 and up["file_size"] == size
        # the last chunk is the short remainder; a full-size last chunk is refused before reading
        r = await c.put(f"/v1/uploads/{up['id']}/chunks/640", content=b"x" * 8)
        assert_error(r, 400, "wrong_chunk_size")
        r = await c.put(f"/v1/uploads/{up['id']}/chunks/640", content=b"x" * 7)
        assert r.status_code == 201
        view = (await c.get(f"/v1/uploads/{up['id']}")).json()
        assert view["file_size"] == size and view["bytes_received"] == 7


async def test_chunk_refusals_change_nothing(shared_system: System) -> None:
    data = os.urandom(CHUNK * 3 - 10)
    parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    async with shared_system.client(user()) as c:
        up = await new_upload(c, len(data), sha256=hashlib.sha256(data).hexdigest())
        uid = up["id"]
        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/3", content=parts[0]),
            400,
            "chunk_index_out_of_range",
        )
        assert_error(await c.put(f"/v1/uploads/{uid}/chunks/-1", content=parts[0]), 400)
        # Only ASCII digits name a chunk: int() would read each of these as 0 or 1.
        for spelling in ("+1", "-0", "0_1", "%EF%BC%91", "1.0", "%201", "01", "00"):
            assert_error(
                await c.put(f"/v1/uploads/{uid}/chunks/{spelling}", content=parts[1]),
                400,
                "invalid_chunk_index",
            )
        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=parts[0][:-1]),
            400,
            "wrong_chunk_size",
        )
        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=parts[0] + b"x"),
            400,
            "wrong_chunk_size",
        )
        # the last chunk may be short, but only by exactly the remainder
        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/2", content=parts[0]), 400, "wrong_chunk_size"
        )
        r = await c.put(
            f"/v1/uploads/{uid}/chunks/1", content=parts[1], headers={"X-Chunk-SHA256": "0" * 64}
        )
        assert_error(r, 400, "checksum_mismatch")

        # a body streamed without Content-Length that runs past the chunk size
        async def too_long():
            yield parts[0]
            yield b"more"

        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=too_long()), 400, "wrong_chunk_size"
        )
        assert await missing(c, uid) == [0, 1, 2]

        assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=parts[0])).status_code == 201
        assert (
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=parts[0])
        ).status_code == 200  # same bytes
        other = os.urandom(CHUNK)
        assert_error(
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=other), 409, "chunk_conflict"
        )
        assert await missing(c, uid) == [1, 2]
        body = assert_error(await c.post(f"/v1/uploads/{uid}/complete"), 409, "chunks_missing")
        assert body["error"]["details"]["missing_chunks"] == [1, 2]
        assert await missing(c, uid) == [1, 2]  # nothing deleted
        for i in (1, 2):
            assert (
                await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            ).status_code == 201
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert r.status_code == 200
        assert (await c.get(f"/v1/files/{r.json()['file_id']}/content")).content == data


async def test_complete_with_a_wrong_declared_sha256_is_refused(shared_system: System) -> None:
    data = os.urandom(CHUNK)
    async with shared_system.client(user()) as c:
        up = await new_upload(c, len(data), sha256=hashlib.sha256(b"other").hexdigest())
        assert (await c.put(f"/v1/uploads/{up['id']}/chunks/0", content=data)).status_code == 201
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert_error(r, 422, "checksum_mismatch")
        await assert_documented(c, "post", "/v1/uploads/{upload_id}/complete", r)
        view = (await c.get(f"/v1/uploads/{up['id']}")).json()
        assert view["status"] == "IN_PROGRESS" and view["file_id"] is None


async def test_complete_into_a_bucket_deleted_meanwhile_is_refused(shared_system: System) -> None:
    """The bucket was only checked at create: an upload completed after its bucket was
    deleted (or its name taken by someone else) became an object of no bucket, listed
    nowhere and 404 at its own path. Now complete checks again; nothing is made."""
    data = os.urandom(100)
    bucket = f"gone-{secrets.token_hex(4)}"
    async with shared_system.client(user()) as c, shared_system.client(user()) as other:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        keyed = await new_upload(c, len(data), bucket=bucket, key="k/1")
        plain = await new_upload(c, len(data), bucket=bucket)
        for up in (keyed, plain):
            assert (await c.put(f"/v1/uploads/{up['id']}/chunks/0", content=data)).is_success
        assert (await c.delete(f"/v1/buckets/{bucket}")).status_code == 200
        for up in (keyed, plain):
            r = await c.post(f"/v1/uploads/{up['id']}/complete")
            assert_error(r, 404, "bucket_not_found")
            view = (await c.get(f"/v1/uploads/{up['id']}")).json()
            assert view["status"] == "IN_PROGRESS" and view["file_id"] is None
        assert (await other.post("/v1/buckets", json={"name": bucket})).status_code == 201
        assert_error(await c.post(f"/v1/uploads/{keyed['id']}/complete"), 404, "bucket_not_found")
        assert (await other.delete(f"/v1/buckets/{bucket}")).status_code == 200
        # The bucket back in the owner's hands: the same upload completes into it.
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        r = await c.post(f"/v1/uploads/{keyed['id']}/complete")
        assert r.status_code == 200, r.text
        assert (await c.get(f"/v1/buckets/{bucket}/objects/k/1")).content == data


async def test_zero_byte_upload(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        up = await new_upload(c, 0)
        assert up["total_chunks"] == 0
        assert await missing(c, up["id"]) == []
        assert_error(
            await c.put(f"/v1/uploads/{up['id']}/chunks/0", content=b""),
            400,
            "chunk_index_out_of_range",
        )
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert r.status_code == 200 and r.json()["sha256"] == hashlib.sha256(b"").hexdigest()
        r = await c.get(f"/v1/files/{r.json()['file_id']}/content")
        assert r.status_code == 200 and r.content == b""


async def test_a_chunk_for_a_tus_upload_is_the_wrong_mode(shared_system: System) -> None:
    """A tus upload takes appended bytes, not numbered chunks: a chunk PUT naming one says
    so (409, as the domain does), not "chunk index must be in [0, 0)"."""
    tus = {"Tus-Resumable": "1.0.0"}
    async with shared_system.client(user()) as c:
        for length in ({"Upload-Length": "100"}, {"Upload-Defer-Length": "1"}):
            r = await c.post("/v1/tus", headers=tus | length)
            assert r.status_code == 201, r.text
            uid = r.headers["location"].rstrip("/").rsplit("/", 1)[1]
            body = assert_error(
                await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"x" * 100),
                409,
                "wrong_upload_mode",
            )
            assert body["error"]["details"] == {"mode": "stream"}
            head = await c.head(f"/v1/tus/{uid}", headers=tus)
            assert head.headers["upload-offset"] == "0"  # nothing was taken


async def test_aborted_upload_refuses_chunks_and_complete(shared_system: System) -> None:
    data = os.urandom(CHUNK * 2)
    async with shared_system.client(user()) as c:
        up = await new_upload(c, len(data))
        assert (await c.delete(f"/v1/uploads/{up['id']}")).json()["status"] == "ABORTED"
        assert_error(
            await c.put(f"/v1/uploads/{up['id']}/chunks/0", content=data[:CHUNK]),
            409,
            "upload_not_active",
        )
        assert_error(await c.post(f"/v1/uploads/{up['id']}/complete"), 409)


async def test_client_disconnect_mid_chunk_records_nothing(shared_system: System) -> None:
    chunk = 256 * 1024
    data = os.urandom(chunk)
    async with shared_system.client(user()) as c:
        r = await c.post(
            "/v1/uploads", json={"file_name": "f", "file_size": chunk, "chunk_size": chunk}
        )
        uid = r.json()["id"]
        token = c.headers["Authorization"]
        s = shared_system.settings
        _reader, writer = await asyncio.open_connection(s.host, s.port)
        writer.write(
            f"PUT /v1/uploads/{uid}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            f"Content-Length: {chunk}\r\n\r\n".encode()
            + data[: chunk // 2]
        )
        await writer.drain()
        writer.close()  # the client goes away with half the body sent
        await writer.wait_closed()
        # the server is still fine, the chunk is still missing, no partial blob or temp file
        assert await missing(c, uid) == [0]
        blobs = shared_system.settings.blobs_url.removeprefix("file://")

        def leftovers() -> list[str]:
            return [f for _, _, fs in os.walk(os.path.join(blobs, "tmp")) for f in fs]

        for _ in range(100):  # the server notices the disconnect asynchronously
            if not leftovers():
                break
            await asyncio.sleep(0.05)
        assert leftovers() == []
        assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert (await c.get(f"/v1/files/{r.json()['file_id']}/content")).content == data


async def test_parallel_chunks_to_one_upload_lose_nothing(shared_system: System) -> None:
    data = os.urandom(CHUNK * 16)
    parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    async with shared_system.client(user()) as c:
        up = await new_upload(c, len(data))
        sem = asyncio.Semaphore(8)

        async def put(i: int) -> int:
            async with sem:
                return (
                    await c.put(f"/v1/uploads/{up['id']}/chunks/{i}", content=parts[i])
                ).status_code

        assert await asyncio.gather(*[put(i) for i in range(16)]) == [201] * 16
        assert await missing(c, up["id"]) == []
        r = await c.post(f"/v1/uploads/{up['id']}/complete")
        assert (await c.get(f"/v1/files/{r.json()['file_id']}/content")).content == data


@pytest.mark.parametrize("depth", [65, 300, 5_000, 100_000])
async def test_a_deeply_nested_json_body_is_a_400(shared_system: System, depth: int) -> None:
    # A task's params are free JSON: nested past the decoder's recursion limit (about
    # 1,000) they raised RecursionError, past orjson's (255) the command's encoding failed:
    # both 500s. Within a 1 MiB body.
    nested = b"[" * depth + b"]" * depth
    async with shared_system.client(user()) as c:
        for body in (
            b'{"type": "delete", "params": {"x": ' + nested + b"}}",
            b'{"type": "delete", "params": {"x": "\\u0000", "y": ' + nested + b"}}",
        ):
            r = await c.post(
                "/v1/tasks", content=body, headers={"Content-Type": "application/json"}
            )
            body = assert_error(r, 400, "json_too_deep")
            assert body["error"]["details"] == {"max_depth": 64}
        r = await c.post(
            "/v1/uploads",
            content=b'{"file_name": "f", "file_size": 1, "metadata": ' + nested + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.text
        # The process still answers; 64 levels are not refused for their depth.
        assert (await c.get("/v1/tasks")).status_code == 200
        ok = b"[" * 62 + b"]" * 62  # with the body and params objects: 64 levels
        r = await c.post(
            "/v1/tasks",
            content=b'{"type": "delete", "params": {"x": ' + ok + b"}}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] != "json_too_deep", r.text


async def test_a_body_of_100000_keys_is_a_short_4xx(
    shared_system: System,
) -> None:
    params = {f"k{i}": i for i in range(100_000)}
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/tasks", json={"type": "delete", "params": params})
        assert 400 <= r.status_code < 500, r.text
        assert len(r.content) < 64 * 1024  # the answer does not echo the keys
        r = await c.post("/v1/uploads", json={"file_name": "f", "file_size": 1, "metadata": params})
        assert 400 <= r.status_code < 500, r.text
        assert len(r.content) < 64 * 1024


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (
            "/v1/uploads",
            [
                "INITIATED",
                "IN_PROGRESS",
                "COMPLETED",
                "FAILED",
                "ABORTED",
                "EXPIRED",
                "PARTIAL_COMPLETE",
            ],
        ),
        (
            "/v1/fetches",
            ["PENDING", "IN_PROGRESS", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"],
        ),
    ],
)
async def test_a_list_s_unknown_status_is_refused_and_a_known_one_any_case_filters(
    shared_system: System, path: str, allowed: list[str]
) -> None:
    async with shared_system.client(user()) as c:
        r = await c.get(path, params={"status": "nope"})
        body = assert_error(r, 400, "invalid_query")
        details = {"field": "status", "value": "nope", "allowed": allowed}
        assert body["error"]["details"] == details, body
        await assert_documented(c, "get", path, r)
        if path == "/v1/uploads":
            up = await new_upload(c, 10)

            async def listed() -> bool:
                r = await c.get(path, params={"status": "initiated"})
                assert r.status_code == 200, r.text
                return [u["id"] for u in r.json()["items"]] == [up["id"]]

            await wait_until(listed, timeout=20)
        for status in ("completed", "Completed", "COMPLETED"):
            r = await c.get(path, params={"status": status})
            assert r.status_code == 200 and r.json()["items"] == [], r.text
