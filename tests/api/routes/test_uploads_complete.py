"""Uploads, complete: Idempotency-Key, deduplication, parallel chunks, quotas, in-flight
limits, expiry and garbage collection, progress and stats, through the whole system.

Three systems: the module's shared one (default settings), `limited` (small quota, small
in-flight limits) and `expiring` (an upload TTL and GC grace of seconds, the periodic
cleanup out of the way so each run is the test's own).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from bus.blobs.inline import InlineBlobStore
from bus.blobs.local import LocalBlobStore
from bus.config.settings import Settings
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import assert_error, user
from tests.api.documented import assert_documented
from tests.system import System, isolated_system, start_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 4 * 1024


def key() -> str:
    return f"k-{secrets.token_hex(8)}"


def pieces(data: bytes, chunk: int = CHUNK) -> list[bytes]:
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


async def create(c: httpx.AsyncClient, size: int, **extra: Any) -> httpx.Response:
    return await c.post(
        "/v1/uploads", json={"file_name": "f.bin", "file_size": size, "chunk_size": CHUNK, **extra}
    )


async def new_upload(c: httpx.AsyncClient, size: int, **extra: Any) -> str:
    r = await create(c, size, **extra)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def upload_file(c: httpx.AsyncClient, data: bytes) -> str:
    uid = await new_upload(c, len(data))
    for i, p in enumerate(pieces(data)):
        assert (await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=p)).status_code == 201
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


async def count_events(pool: asyncpg.Pool, event_type: str, **where: str) -> int:
    conds = ["event_type = $1"]
    args: list[Any] = [event_type]
    for column, value in where.items():
        args.append(value)
        conds.append(f"{column} = ${len(args)}")
    return int(
        await pool.fetchval(
            f"SELECT count(*) FROM eventstore.events WHERE {' AND '.join(conds)}", *args
        )
    )


async def in_read_model(pool: asyncpg.Pool, table: str, id_: str, **equal: Any) -> bool:
    conds = "".join(f" AND {k} = ${i + 2}" for i, k in enumerate(equal))
    return bool(
        await pool.fetchval(
            f"SELECT 1 FROM readmodel.{table} WHERE id = $1{conds}", uuid.UUID(id_), *equal.values()
        )
    )


def custom_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, **overrides: Any
) -> AbstractAsyncContextManager[System]:
    """A whole system on its own database and topics, with some settings changed."""
    return isolated_system(pg_server.url, kafka_server.bootstrap, **overrides)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with custom_system(
        pg_server,
        kafka_server,
        quota_bytes=100_000,
        quotas=(("vip", 10_000_000),),
        max_inflight_per_upload=2,
        max_inflight=3,
    ) as s:
        yield s


TTL = 4.0
GRACE = 3.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def expiring(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with custom_system(
        pg_server, kafka_server, upload_ttl=TTL, gc_grace=GRACE, cleanup_interval=3600.0
    ) as s:
        yield s


async def let_time_pass(seconds: float) -> None:
    """Expiry and grace are about wall-clock time: here time passing is the thing under
    test, not a stand-in for an event (nothing could signal "4 seconds of inactivity")."""
    await asyncio.sleep(seconds)


async def let_time_pass_until(deadline: float) -> None:
    """Until `deadline` (time.monotonic()), so that slow steps before do not add up."""
    await let_time_pass(max(deadline - time.monotonic(), 0.0))


# ---- idempotency ----------------------------------------------------------------------


async def test_create_replayed_with_the_same_key_answers_the_same_and_creates_one(
    shared_system: System,
) -> None:
    me = user()
    k = key()
    body = {"file_name": "a.bin", "file_size": 3 * CHUNK, "chunk_size": CHUNK}
    async with shared_system.client(me) as c:
        first = await c.post("/v1/uploads", json=body, headers={"Idempotency-Key": k})
        assert first.status_code == 201, first.text
        again = await c.post("/v1/uploads", json=body, headers={"Idempotency-Key": k})
        assert again.status_code == 201
        assert again.content == first.content  # byte for byte, keys in the same order
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        assert await count_events(shared_system.pool, "UploadInitiated", owner=me) == 1
        # The same key for another request is refused, and changes nothing.
        other = await c.post(
            "/v1/uploads", json={**body, "file_size": 5}, headers={"Idempotency-Key": k}
        )
        assert_error(other, 409, "idempotency_key_reused")
        assert_error(
            await c.post(
                f"/v1/uploads/{first.json()['id']}/complete", headers={"Idempotency-Key": k}
            ),
            409,
            "idempotency_key_reused",
        )
        # Without a key, the same request is a new upload.
        fresh = await c.post("/v1/uploads", json=body)
        assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
        bad = await c.post("/v1/uploads", json=body, headers={"Idempotency-Key": "a b"})
        assert_error(bad, 400, "invalid_idempotency_key")
    # Keys are per caller: another user's identical key is theirs alone.
    async with shared_system.client(user()) as other_user:
        theirs = await other_user.post("/v1/uploads", json=body, headers={"Idempotency-Key": k})
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert await count_events(shared_system.pool, "UploadInitiated", owner=me) == 2


async def test_chunk_replayed_with_the_same_key_is_recorded_once(shared_system: System) -> None:
    data = os.urandom(2 * CHUNK)
    parts = pieces(data)
    k = key()
    async with shared_system.client(user()) as c:
        uid = await new_upload(c, len(data))
        url = f"/v1/uploads/{uid}/chunks/0"
        first = await c.put(url, content=parts[0], headers={"Idempotency-Key": k})
        assert first.status_code == 201, first.text
        again = await c.put(url, content=parts[0], headers={"Idempotency-Key": k})
        # The first answer again (201, not the 200 of a plain repeat), recorded once.
        assert again.status_code == 201 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        stream = f"upload-{uid}"
        assert await count_events(shared_system.pool, "UploadChunkStored", stream_id=stream) == 1
        # Same key, other bytes: compared once the body is hashed.
        assert_error(
            await c.put(url, content=parts[1], headers={"Idempotency-Key": k}),
            409,
            "idempotency_key_reused",
        )
        # Same key, other chunk: refused before the body is read.
        assert_error(
            await c.put(
                f"/v1/uploads/{uid}/chunks/1", content=parts[1], headers={"Idempotency-Key": k}
            ),
            409,
            "idempotency_key_reused",
        )
        # Same key, same bytes, another declared checksum: another request.
        assert_error(
            await c.put(
                url,
                content=parts[0],
                headers={
                    "Idempotency-Key": k,
                    "X-Chunk-SHA256": hashlib.sha256(parts[0]).hexdigest(),
                },
            ),
            409,
            "idempotency_key_reused",
        )
        assert await count_events(shared_system.pool, "UploadChunkStored", stream_id=stream) == 1


async def test_complete_replays_success_and_refusal_alike(shared_system: System) -> None:
    data = os.urandom(2 * CHUNK + 7)
    parts = pieces(data)
    async with shared_system.client(user()) as c:
        uid = await new_upload(c, len(data))
        for i in (0, 1):
            assert (
                await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            ).status_code == 201
        early = key()
        refused = await c.post(f"/v1/uploads/{uid}/complete", headers={"Idempotency-Key": early})
        err = assert_error(refused, 409, "chunks_missing")
        assert (await c.put(f"/v1/uploads/{uid}/chunks/2", content=parts[2])).status_code == 201
        # A refusal that changed nothing is an answer too: the same key gets it again, even
        # though the upload could complete now.
        replayed = await c.post(f"/v1/uploads/{uid}/complete", headers={"Idempotency-Key": early})
        assert assert_error(replayed, 409, "chunks_missing") == err
        # the same bytes, but for the request id, which is the replaying request's own
        old_rid, new_rid = refused.headers["x-request-id"], replayed.headers["x-request-id"]
        assert replayed.content == refused.content.replace(old_rid.encode(), new_rid.encode())
        k = key()
        done = await c.post(f"/v1/uploads/{uid}/complete", headers={"Idempotency-Key": k})
        assert done.status_code == 200, done.text
        again = await c.post(f"/v1/uploads/{uid}/complete", headers={"Idempotency-Key": k})
        assert again.status_code == 200 and again.content == done.content
        file_id = done.json()["file_id"]
        assert (await c.get(f"/v1/files/{file_id}/content")).content == data
    pool = shared_system.pool
    assert await count_events(pool, "UploadCompleted", stream_id=f"upload-{uid}") == 1
    assert await count_events(pool, "FileCreated", stream_id=f"file-{file_id}") == 1


async def test_concurrent_completes_all_answer_with_the_one_file(shared_system: System) -> None:
    # Each complete that found the upload completed already sends the file's creation
    # itself, under the id derived from the upload: before, the replies to those shared
    # ids reached one waiter only, and the others answered 503 after the command timeout.
    me = user()
    async with shared_system.client(me) as c:
        for _ in range(3):
            data = os.urandom(1000)
            uid = await new_upload(c, len(data))
            assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
            answers = await asyncio.wait_for(
                asyncio.gather(*(c.post(f"/v1/uploads/{uid}/complete") for _ in range(20))),
                timeout=shared_system.settings.command_timeout,
            )
            assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers]
            assert len({r.json()["file_id"] for r in answers}) == 1
        assert await count_events(shared_system.pool, "FileCreated", owner=me) == 3


async def test_concurrent_requests_with_one_key_run_once(shared_system: System) -> None:
    me = user()
    k = key()
    body = {"file_name": "c.bin", "file_size": CHUNK, "chunk_size": CHUNK}
    async with shared_system.client(me) as c:
        answers = await asyncio.gather(
            *(c.post("/v1/uploads", json=body, headers={"Idempotency-Key": k}) for _ in range(8))
        )
        ok = [r for r in answers if r.status_code == 201]
        for r in answers:
            if r.status_code != 201:
                assert_error(r, 409, "idempotency_request_in_progress")
                assert r.headers["retry-after"]
        assert ok and all(r.json() == ok[0].json() for r in ok)
        assert await count_events(shared_system.pool, "UploadInitiated", owner=me) == 1

        # A chunk PUT held open (its body not finished) holds its key: a duplicate arriving
        # meanwhile is told so, and does not run.
        uid = ok[0].json()["id"]
        data = os.urandom(CHUNK)
        release = asyncio.Event()

        async def held() -> AsyncIterator[bytes]:
            yield data[:100]
            await release.wait()
            yield data[100:]

        ck = key()
        first = asyncio.create_task(
            c.put(f"/v1/uploads/{uid}/chunks/0", content=held(), headers={"Idempotency-Key": ck})
        )

        async def claimed() -> bool:
            return bool(
                await shared_system.pool.fetchval(
                    "SELECT 1 FROM api.idempotency_keys WHERE owner = $1 AND key = $2", me, ck
                )
            )

        await wait_until(claimed)
        dup = await c.put(
            f"/v1/uploads/{uid}/chunks/0", content=data, headers={"Idempotency-Key": ck}
        )
        assert_error(dup, 409, "idempotency_request_in_progress")
        release.set()
        r = await first
        assert r.status_code == 201, r.text
        replay = await c.put(
            f"/v1/uploads/{uid}/chunks/0", content=data, headers={"Idempotency-Key": ck}
        )
        assert replay.status_code == 201 and replay.json() == r.json()
        stream = f"upload-{uid}"
        assert await count_events(shared_system.pool, "UploadChunkStored", stream_id=stream) == 1


# ---- deduplication --------------------------------------------------------------------


async def test_known_content_of_my_own_is_a_file_at_once_and_nobody_elses_leaks(
    shared_system: System,
) -> None:
    data = os.urandom(CHUNK + 10)
    digest = hashlib.sha256(data).hexdigest()
    alice, bob = user(), user()
    async with shared_system.client(alice) as a, shared_system.client(bob) as b:
        file_id = await upload_file(a, data)
        await wait_until(lambda: in_read_model(shared_system.pool, "files", file_id))
        r = await create(a, len(data), sha256=digest)
        assert r.status_code == 201, r.text
        got = r.json()
        assert got["status"] == "COMPLETED" and got["file_id"] == file_id
        assert got["total_chunks"] == 0 and got["id"] is None
        assert r.headers["location"] == f"/v1/files/{file_id}"
        assert (await a.get(f"/v1/files/{got['file_id']}/content")).content == data
        # Same content, other size declared or other bucket: not the same file.
        assert (await create(a, len(data) + 1, sha256=digest)).json()["status"] == "INITIATED"
        other = f"other-{secrets.token_hex(4)}"
        assert (await a.post("/v1/buckets", json={"name": other})).status_code == 201
        assert (await create(a, len(data), sha256=digest, bucket=other)).json()[
            "status"
        ] == "INITIATED"

        # Bob asking for alice's content gets exactly what unknown content gets.
        unknown = hashlib.sha256(os.urandom(32)).hexdigest()
        for_alices = await create(b, len(data), sha256=digest)
        for_unknown = await create(b, len(data), sha256=unknown)
        assert for_alices.status_code == for_unknown.status_code == 201
        x, y = for_alices.json(), for_unknown.json()
        assert x.keys() == y.keys()
        assert {k: v for k, v in x.items() if k != "id"} == {
            k: v for k, v in y.items() if k != "id"
        }
        assert x["status"] == "INITIATED" and x["file_id"] is None
        assert file_id not in for_alices.text
        # Bob's upload of the same bytes works, and makes bob's own file.
        for i, p in enumerate(pieces(data)):
            put = await b.put(f"/v1/uploads/{x['id']}/chunks/{i}", content=p)
            assert put.status_code == 201
        done = await b.post(f"/v1/uploads/{x['id']}/complete")
        assert done.status_code == 200 and done.json()["file_id"] != file_id


async def test_known_content_is_no_way_past_the_create_rules(shared_system: System) -> None:
    """Deduplication answered before the request was checked: a create that is refused
    for unknown content (a name with a slash, an empty metadata key, a chunk_size past the
    limit) got 201 and the file when the content was known. Now the same 400 either way."""
    data = os.urandom(CHUNK + 10)
    digest = hashlib.sha256(data).hexdigest()
    unknown = hashlib.sha256(os.urandom(32)).hexdigest()
    async with shared_system.client(user()) as c:
        file_id = await upload_file(c, data)
        await wait_until(lambda: in_read_model(shared_system.pool, "files", file_id))
        assert (await create(c, len(data), sha256=digest)).json()["file_id"] == file_id
        for extra, code in [
            ({"file_name": "a/b"}, "invalid_file_name"),
            ({"metadata": {"": "x"}}, "invalid_metadata"),
            ({"chunk_size": 1 << 40}, "invalid_chunk_size"),
        ]:
            for sha in (digest, unknown):
                assert_error(await create(c, len(data), sha256=sha, **extra), 400, code)


# ---- parallel chunks ------------------------------------------------------------------


async def test_eight_parallel_chunk_uploads_lose_nothing(shared_system: System) -> None:
    n = 96
    data = os.urandom(n * CHUNK - 123)
    parts = pieces(data)
    async with shared_system.client(user()) as c:
        uid = await new_upload(c, len(data), sha256=hashlib.sha256(data).hexdigest())
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(parts)):
            queue.put_nowait(i)
        statuses: list[int] = []

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
                statuses.append(r.status_code)

        await asyncio.gather(*(worker() for _ in range(8)))
        assert statuses == [201] * len(parts)
        assert (await c.get(f"/v1/uploads/{uid}/missing-chunks")).json()["missing_chunks"] == []
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert r.status_code == 200, r.text
        assert (await c.get(f"/v1/files/{r.json()['file_id']}/content")).content == data
    stream = f"upload-{uid}"
    assert await count_events(shared_system.pool, "UploadChunkStored", stream_id=stream) == len(
        parts
    )


# ---- progress and stats ---------------------------------------------------------------


async def test_progress_speed_eta_and_stats(shared_system: System) -> None:
    data = os.urandom(4 * CHUNK)
    parts = pieces(data)
    async with shared_system.client(user()) as c:
        uid = await new_upload(c, len(data))
        for i in (0, 2):
            assert (
                await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            ).status_code == 201
        view = (await c.get(f"/v1/uploads/{uid}")).json()
        assert view["progress"] == 50.0 and view["bytes_received"] == 2 * CHUNK
        assert view["missing_chunks"] == [1, 3]
        assert view["speed_bytes_per_second"] > 0 and view["eta_seconds"] >= 0

        async def stats() -> dict[str, Any] | None:
            s = (await c.get("/v1/uploads/stats")).json()
            return s if s["bytes_received"] == 2 * CHUNK else None

        s = await wait_until(stats)
        assert s["active"] == 1 and s["average_progress"] == 50.0
        assert s["bytes_pending"] == 2 * CHUNK and len(s["recent"]) == 7


# ---- quotas ---------------------------------------------------------------------------


async def test_quota_refuses_a_create_with_details(limited: System) -> None:
    async with limited.client(user()) as c, limited.client("vip") as vip:
        first = await new_upload(c, 60_000)
        # Right after the first create: counted even before the read model shows it.
        err = assert_error(await create(c, 50_000), 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 60_000, "requested": 50_000}
        data = os.urandom(40_000)
        second = await new_upload(c, len(data))  # exactly up to the quota
        assert_error(await create(c, 1), 413, "quota_exceeded")
        # A per-user override.
        assert (await create(vip, 5_000_000)).status_code == 201
        # An aborted upload no longer counts (once the read model has it).
        assert (await c.delete(f"/v1/uploads/{first}")).status_code == 200
        await wait_until(lambda: in_read_model(limited.pool, "uploads", first, status="ABORTED"))
        assert (await create(c, 50_000)).status_code == 201
        # An upload turning into a file counts once, whatever the read models show yet.
        for i, p in enumerate(pieces(data)):
            assert (await c.put(f"/v1/uploads/{second}/chunks/{i}", content=p)).status_code == 201
        assert (await c.post(f"/v1/uploads/{second}/complete")).status_code == 200
        err = assert_error(await create(c, 10_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 90_000
        await wait_until(lambda: in_read_model(limited.pool, "uploads", second, status="COMPLETED"))
        err = assert_error(await create(c, 10_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 90_000
        assert (await create(c, 10_000)).status_code == 201


async def test_quota_refuses_a_chunk_once_the_quota_shrank(limited: System) -> None:
    data = os.urandom(60_000)
    me = user()
    async with limited.client(me) as c:
        uid = await new_upload(c, len(data))
        assert (
            await c.put(f"/v1/uploads/{uid}/chunks/0", content=pieces(data)[0])
        ).status_code == 201
    # The same system, behind a second API process configured with a smaller quota.
    smaller = Settings(**{**limited.settings.__dict__, "quota_bytes": 50_000})
    api2 = await start_system(smaller, limited.pool, kinds=("api",))
    try:
        async with api2.client(me) as c2:
            err = assert_error(
                await c2.put(f"/v1/uploads/{uid}/chunks/1", content=pieces(data)[1]),
                413,
                "quota_exceeded",
            )
            assert err["details"] == {"quota": 50_000, "used": 0, "requested": 60_000}
    finally:
        await api2.shutdown()


TUS = {"Tus-Resumable": "1.0.0"}


async def tus_create(c: httpx.AsyncClient, size: int | None) -> httpx.Response:
    length = {"Upload-Length": str(size)} if size is not None else {"Upload-Defer-Length": "1"}
    return await c.post("/v1/tus", headers=TUS | length)


async def test_a_chunk_for_a_tus_upload_without_a_length_is_refused_under_a_quota(
    limited: System,
) -> None:
    # The chunk's quota check asked for the upload's size, None here: a 500 before.
    async with limited.client(user()) as c:
        r = await tus_create(c, None)
        assert r.status_code == 201, r.text
        uid = r.headers["location"].rstrip("/").rsplit("/", 1)[1]
        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"x" * 10)
        assert_error(r, 409, "wrong_upload_mode")


async def test_concurrent_creates_never_pass_the_quota_together(limited: System) -> None:
    """Ten creates at once (native and tus), each of 30 KB, against 100 KB: exactly three
    pass, whichever they are (each check sees the bytes the others reserved)."""
    async with limited.client(user()) as c:
        answers = await asyncio.gather(
            *[create(c, 30_000) for _ in range(5)], *[tus_create(c, 30_000) for _ in range(5)]
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 3 + [413] * 7, [r.text for r in answers]
        for r in answers:
            if r.status_code == 413:
                assert_error(r, 413, "quota_exceeded")
        err = assert_error(await create(c, 10_001), 413, "quota_exceeded")
        assert err["details"]["used"] == 90_000  # the three, nothing left reserved


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (httpx sends it chunked)."""
    for i in range(0, len(data), 8192):
        yield data[i : i + 8192]


async def test_objects_count_and_a_body_without_a_length_stops_at_the_quota(
    limited: System,
) -> None:
    me = user()
    bucket = f"q-{secrets.token_hex(4)}"
    async with limited.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        objects = f"/v1/buckets/{bucket}/objects"
        r = await c.put(f"{objects}/a", content=os.urandom(60_000))
        assert r.status_code == 201, r.text
        # An object is a file made without an upload: it counts (it did not before).
        err = assert_error(await create(c, 50_000), 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 60_000, "requested": 50_000}
        # Without a Content-Length the body may bring what is left, 40 KB, and no more.
        r = await c.put(f"{objects}/b", content=chunked(os.urandom(50_000)))
        assert_error(r, 413, "quota_exceeded")
        assert (await c.get(f"{objects}/b")).status_code == 404
        data = os.urandom(40_000)
        r = await c.put(f"{objects}/c", content=chunked(data))  # exactly the rest
        assert r.status_code == 201, r.text
        assert (await c.get(f"{objects}/c")).content == data
        err = assert_error(await create(c, 1), 413, "quota_exceeded")
        assert err["details"]["used"] == 100_000


async def test_a_tus_upload_without_a_length_stops_at_the_quota(limited: System) -> None:
    async with limited.client(user()) as c:
        r = await tus_create(c, None)
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        patch = TUS | {"Content-Type": "application/offset+octet-stream"}
        r = await c.patch(url, content=os.urandom(60_000), headers=patch | {"Upload-Offset": "0"})
        assert r.status_code == 204, r.text
        # Declared too long for what is left: refused before a byte is read.
        r = await c.patch(
            url, content=os.urandom(50_000), headers=patch | {"Upload-Offset": "60000"}
        )
        assert_error(r, 413, "quota_exceeded")
        # Sent without a length: cut at the quota; what was durable is kept, no more.
        r = await c.patch(
            url, content=chunked(os.urandom(50_000)), headers=patch | {"Upload-Offset": "60000"}
        )
        assert_error(r, 413, "quota_exceeded")
        offset = int((await c.head(url, headers=TUS)).headers["upload-offset"])
        assert 60_000 <= offset <= 100_000
        # The bytes held count (through the read model, for an upload without a length).
        uid = url.rstrip("/").rsplit("/", 1)[1]
        await wait_until(lambda: in_read_model(limited.pool, "uploads", uid, bytes_received=offset))
        err = assert_error(await tus_create(c, 100_001 - offset), 413, "quota_exceeded")
        assert err["details"]["used"] == offset


async def test_a_tus_creation_without_a_length_brings_at_most_the_quota(limited: System) -> None:
    async with limited.client(user()) as c:
        r = await c.post(
            "/v1/tus",
            headers=TUS
            | {"Upload-Defer-Length": "1", "Content-Type": "application/offset+octet-stream"},
            content=chunked(os.urandom(150_000)),
        )
        assert_error(r, 413, "quota_exceeded")
        head = await c.head(r.headers["location"], headers=TUS)  # it exists: resumable
        assert int(head.headers["upload-offset"]) <= 100_000


async def tus_part(c: httpx.AsyncClient, size: int) -> str:
    """A finished partial tus upload of `size` random bytes: its URL."""
    r = await c.post(
        "/v1/tus", headers=TUS | {"Upload-Length": str(size), "Upload-Concat": "partial"}
    )
    assert r.status_code == 201, r.text
    url = str(r.headers["location"])
    patch = TUS | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    r = await c.patch(url, content=os.urandom(size), headers=patch)
    assert r.status_code == 204, r.text
    return url


async def tus_final(c: httpx.AsyncClient, *parts: str) -> httpx.Response:
    return await c.post("/v1/tus", headers=TUS | {"Upload-Concat": "final;" + " ".join(parts)})


async def concatenation_file(c: httpx.AsyncClient, final: httpx.Response) -> str:
    assert final.status_code == 201, final.text
    uid = final.headers["location"].rstrip("/").rsplit("/", 1)[1]
    fid = (await c.get(f"/v1/uploads/{uid}")).json()["file_id"]
    assert fid
    return str(fid)


async def file_deleted(pool: asyncpg.Pool, fid: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT deleted_at IS NOT NULL FROM readmodel.files WHERE id = $1", uuid.UUID(fid)
        )
    )


async def test_a_tus_concatenation_of_parallel_parts_counts_its_bytes_once(
    limited: System,
) -> None:
    """Parts uploaded in parallel and concatenated: the final upload's file holds their
    bytes, so the parts (still reusable) no longer count while it lives. Before, they
    counted again until they expired: 60 KB was 120 KB, and nothing more fitted."""
    async with limited.client(user()) as c:
        a, b = await asyncio.gather(tus_part(c, 30_000), tus_part(c, 30_000))
        await concatenation_file(c, await tus_final(c, a, b))
        err = assert_error(await create(c, 40_001), 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 60_000, "requested": 40_000 + 1}
        await new_upload(c, 40_000)  # exactly up to the quota: the 60 KB counted once
        # The same parts again are a second file of 60 KB, none of it counting already.
        r = await tus_final(c, a, b)
        err = assert_error(r, 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 100_000, "requested": 60_000}
        assert "location" not in r.headers  # nothing was created

        # The upload statistics keep their own rule: a concatenation's bytes once, in its
        # parts (the native upload received nothing yet). The finished parts are
        # PARTIAL_COMPLETE, not active, while the quota above still counts them.
        async def stats() -> dict[str, Any] | None:
            s = (await c.get("/v1/uploads/stats")).json()
            n = s["by_status"]
            counts = (n["COMPLETED"], n["PARTIAL_COMPLETE"], n["IN_PROGRESS"], n["INITIATED"])
            return s if counts == (1, 2, 0, 1) else None

        s = await wait_until(stats)
        assert s["bytes_received"] == 60_000 and s["active"] == 1


async def test_a_second_concatenation_of_the_same_parts_counts_as_a_second_file(
    limited: System,
) -> None:
    """Two finals of one part are two files: each counts. Once no final holds the part
    (their files deleted), the part counts again, as long as it lives: it can still be
    concatenated."""
    async with limited.client(user()) as c:
        part = await tus_part(c, 30_000)
        first = await concatenation_file(c, await tus_final(c, part))
        # 60 KB more, none of it counting already (the first file holds the part's bytes).
        second = await concatenation_file(c, await tus_final(c, part, part))
        err = assert_error(await create(c, 10_001), 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 90_000, "requested": 10_001}
        # Refused where it does not fit: 30 KB more is 120 KB.
        err = assert_error(await tus_final(c, part), 413, "quota_exceeded")
        assert err["details"] == {"quota": 100_000, "used": 90_000, "requested": 30_000}
        assert (await c.delete(f"/v1/files/{first}")).status_code == 200
        await wait_until(lambda: file_deleted(limited.pool, first))
        err = assert_error(await create(c, 100_000), 413, "quota_exceeded")
        assert err["details"]["used"] == 60_000  # the second file; the part is in it
        assert (await c.delete(f"/v1/files/{second}")).status_code == 200
        await wait_until(lambda: file_deleted(limited.pool, second))
        err = assert_error(await create(c, 100_000), 413, "quota_exceeded")
        assert err["details"]["used"] == 30_000  # the part, held by no file now
        # ... which a new final of it takes over, asking the quota for nothing more.
        await concatenation_file(c, await tus_final(c, part))
        err = assert_error(await create(c, 100_000), 413, "quota_exceeded")
        assert err["details"]["used"] == 30_000


# ---- in-flight limits -----------------------------------------------------------------


async def test_too_many_chunk_puts_in_flight_is_429_with_retry_after(limited: System) -> None:
    async with limited.client("vip") as c:
        a = await new_upload(c, 4 * CHUNK)
        b = await new_upload(c, 4 * CHUNK)
        release = asyncio.Event()
        data = os.urandom(CHUNK)

        async def held() -> AsyncIterator[bytes]:
            yield data[:10]
            await release.wait()
            yield data[10:]

        def put_held(uid: str, i: int, k: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(
                c.put(
                    f"/v1/uploads/{uid}/chunks/{i}", content=held(), headers={"Idempotency-Key": k}
                )
            )

        async def holding_slots(*keys: str) -> bool:
            # A PUT claims its Idempotency-Key only once it holds its in-flight slot (the
            # limit is checked first): the claimed rows say the slots are taken.
            n = await limited.pool.fetchval(
                "SELECT count(*) FROM api.idempotency_keys WHERE owner = 'vip'"
                " AND key = ANY($1::text[])",
                list(keys),
            )
            return bool(n == len(keys))

        async def probe(uid: str) -> httpx.Response:
            # Out of range on purpose: without a free slot it is 429 before anything is
            # checked (or read); with one it would be a harmless 400.
            return await c.put(f"/v1/uploads/{uid}/chunks/99", content=b"x")

        keys = [key(), key()]
        holding = [put_held(a, 0, keys[0]), put_held(a, 1, keys[1])]
        await wait_until(lambda: holding_slots(*keys))
        r = await probe(a)
        err = assert_error(r, 429, "too_many_requests")
        assert err["details"] == {"scope": "upload", "limit": 2}
        assert r.headers["retry-after"] == "1"
        # The same upload spelt otherwise (the path takes any spelling of a UUID) is the
        # same upload: it was a fresh count each, past the per-upload limit.
        for spelling in (a.upper(), a.replace("-", ""), "{" + a + "}", f"urn:uuid:{a}"):
            r = await probe(spelling)
            assert assert_error(r, 429, "too_many_requests")["details"]["scope"] == "upload"
        assert (await probe(b)).status_code == 400  # another upload still has room
        keys.append(key())
        holding.append(put_held(b, 0, keys[2]))
        await wait_until(lambda: holding_slots(*keys))
        r = await probe(b)
        assert assert_error(r, 429, "too_many_requests")["details"] == {
            "scope": "global",
            "limit": 3,
        }
        assert r.headers["retry-after"] == "1"
        release.set()
        assert [t.status_code for t in await asyncio.gather(*holding)] == [201, 201, 201]
        # Slots are returned: the probe goes through to the handler again.
        assert_error(
            await c.put(f"/v1/uploads/{a}/chunks/99", content=b"x"), 400, "chunk_index_out_of_range"
        )


async def test_object_puts_and_tus_creations_with_bytes_hold_slots_too(limited: System) -> None:
    # Before, only chunk PUTs and tus PATCHes counted: a user could hold any number of
    # object PUT or tus creation bodies open, a byte now and then, past every limit.
    bucket = f"b-{secrets.token_hex(4)}"
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    async with limited.client("vip") as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        probe_upload = await new_upload(c, 4 * CHUNK)
        release = asyncio.Event()
        token = limited.token("vip")

        async def held_put(i: int) -> int:
            """An object PUT by hand: its head and half its body, the rest once released;
            the status it is answered with (a 429 comes at once, before the body)."""
            reader, writer = await asyncio.open_connection(
                limited.settings.host, limited.settings.port
            )
            writer.write(
                f"PUT /v1/buckets/{bucket}/objects/held-{i} HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 20\r\n\r\n".encode()
                + b"x" * 10
            )
            await writer.drain()
            answered = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
            released = asyncio.ensure_future(release.wait())
            done, _ = await asyncio.wait({answered, released}, return_when="FIRST_COMPLETED")
            if answered not in done:
                writer.write(b"y" * 10)
                await writer.drain()
            head = await answered
            released.cancel()
            writer.close()
            return int(head.split()[1])

        def hold(i: int) -> asyncio.Task[int]:
            return asyncio.create_task(held_put(i))

        async def probe_refused() -> bool:
            # Out of range on purpose: a harmless 400 while a slot is free, else 429.
            r = await c.put(f"/v1/uploads/{probe_upload}/chunks/99", content=b"x")
            return r.status_code == 429

        holding = [hold(i) for i in range(3)]

        async def held_puts_take_every_slot() -> bool:
            # The probe itself takes a slot for a moment, so a held PUT arriving meanwhile
            # is refused (429, at once): start it again. A refused probe means the three
            # hold every slot.
            for i, t in enumerate(holding):
                if t.done():
                    assert t.result() == 429, t.result()
                    holding[i] = hold(i)
            return await probe_refused()

        await wait_until(held_puts_take_every_slot)
        before = await count_events(limited.pool, "UploadInitiated", owner="vip")
        r = await c.post("/v1/tus", headers={**tus, "Upload-Length": "3"}, content=b"abc")
        assert assert_error(r, 429, "too_many_requests")["details"]["scope"] == "global"
        assert r.headers["retry-after"] == "1" and "location" not in r.headers
        r = await c.put(f"/v1/buckets/{bucket}/objects/more", content=b"abc")
        assert_error(r, 429, "too_many_requests")
        # A creation without bytes holds no slot; the refused one left no upload behind.
        r = await c.post("/v1/tus", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"})
        assert r.status_code == 201, r.text
        assert await count_events(limited.pool, "UploadInitiated", owner="vip") == before + 1
        release.set()
        assert await asyncio.gather(*holding) == [201, 201, 201]
        r = await c.post("/v1/tus", headers={**tus, "Upload-Length": "3"}, content=b"abc")
        assert r.status_code == 201 and r.headers["upload-offset"] == "3", r.text
        r = await c.put(f"/v1/buckets/{bucket}/objects/more", content=b"abc")
        assert r.status_code == 201, r.text
        assert not await probe_refused()  # every slot came back


# ---- expiry and garbage collection ----------------------------------------------------


async def cleanup(c: httpx.AsyncClient) -> dict[str, int]:
    r = await c.post("/v1/admin/cleanup")
    assert r.status_code == 200, r.text
    await assert_documented(c, "post", "/v1/admin/cleanup", r)
    body = r.json()
    assert set(body) == {
        "expired",
        "blobs_deleted",
        "bytes_freed",
        "idempotency_keys_deleted",
        "orphans_deleted",
    }
    return body  # type: ignore[no-any-return]


async def test_cleanup_is_for_admins_only(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        assert_error(await c.post("/v1/admin/cleanup"), 403, "forbidden")
    async with shared_system.client("root", admin=True) as admin:
        await cleanup(admin)


async def test_expiry_is_judged_on_last_activity(expiring: System) -> None:
    data = os.urandom(3 * CHUNK)
    parts = pieces(data)
    async with expiring.client(user()) as c, expiring.client("root", admin=True) as admin:
        stale = await new_upload(c, len(data))
        busy = await new_upload(c, len(data))
        for uid in (stale, busy):
            assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=parts[0])).status_code == 201
        last_stale_activity = time.monotonic()
        await let_time_pass_until(last_stale_activity + TTL * 0.85)
        # Both were created almost a TTL ago; only `busy` does something now, which gives
        # it most of a TTL for the two cleanups below.
        busy_active = time.monotonic()  # its activity below is no earlier than this
        assert (await c.put(f"/v1/uploads/{busy}/chunks/1", content=parts[1])).status_code == 201
        await wait_until(lambda: in_read_model(expiring.pool, "uploads", busy, chunks_received=2))
        await let_time_pass_until(last_stale_activity + TTL + 0.3)
        report = await cleanup(admin)
        assert report["expired"] == 1
        got = (await c.get(f"/v1/uploads/{stale}")).json()
        assert got["status"] == "EXPIRED"
        assert (await c.get(f"/v1/uploads/{busy}")).json()["status"] == "IN_PROGRESS"
        # Again at once: nothing more (the stale one expired once; `busy` is inside its
        # TTL, which the requests below, the OpenAPI document's build among them, would
        # eat into on a loaded machine). Judged only while `busy` is surely inside it: on a
        # machine so loaded that its TTL ran out meanwhile, expiring it is right too.
        again = (await cleanup(admin))["expired"]
        busy_in_ttl = time.monotonic() < busy_active + TTL
        assert again == 0 if busy_in_ttl else again <= 1
        for method, path, url in [
            ("put", "/v1/uploads/{upload_id}/chunks/{index}", f"/v1/uploads/{stale}/chunks/1"),
            ("post", "/v1/uploads/{upload_id}/complete", f"/v1/uploads/{stale}/complete"),
            ("delete", "/v1/uploads/{upload_id}", f"/v1/uploads/{stale}"),
        ]:
            r = await c.request(method, url, content=parts[1] if method == "put" else None)
            assert_error(r, 410, "upload_expired")
            await assert_documented(c, method, path, r)
    pool = expiring.pool
    assert await count_events(pool, "UploadExpired", stream_id=f"upload-{stale}") == 1
    if busy_in_ttl:
        assert await count_events(pool, "UploadExpired", stream_id=f"upload-{busy}") == 0


async def test_gc_collects_only_unreferenced_blobs_past_the_grace(expiring: System) -> None:
    # The system's chunks are 4 KiB: rows of blobs.inline (bus/blobs/inline.py), in front
    # of the local store, which holds the bigger orphan below.
    settings = expiring.settings
    files = LocalBlobStore(Path(settings.blobs_url.removeprefix("file://")))
    blobs = InlineBlobStore(
        files, settings.database_url or "", max_bytes=settings.blob_inline_bytes
    )
    shared, only_file, only_upload = (os.urandom(CHUNK) for _ in range(3))
    sha = {
        name: hashlib.sha256(b).hexdigest()
        for name, b in (("shared", shared), ("file", only_file), ("upload", only_upload))
    }

    async def stored(name: str) -> bool:
        return await blobs.exists(sha[name])

    async def put_raw(data: bytes, age: float = 0.0) -> str:
        async def one() -> AsyncIterator[bytes]:
            yield data

        digest, _ = await blobs.put_stream(one())
        if age and len(data) > blobs.max_bytes:
            t = time.time() - age
            os.utime(files.path_of(digest), (t, t))
        elif age:
            await expiring.pool.execute(
                "UPDATE blobs.inline SET stored_at = stored_at - $2 WHERE sha256 = $1",
                digest,
                age,
            )
        return digest

    async with expiring.client(user()) as c, expiring.client("root", admin=True) as admin:
        file_id = await upload_file(c, only_file + shared)
        doomed = await new_upload(c, 2 * CHUNK)
        for i, p in enumerate((shared, only_upload)):
            assert (await c.put(f"/v1/uploads/{doomed}/chunks/{i}", content=p)).status_code == 201
        # Bytes written straight to the store that nothing references: an old one (a PUT
        # whose command never came) and...
        orphan = await put_raw(os.urandom(100), age=10 * GRACE)
        orphan_file = await put_raw(os.urandom(blobs.max_bytes + 1), age=10 * GRACE)
        assert files.path_of(orphan_file).exists() and not files.path_of(orphan).exists()
        await let_time_pass(TTL + 0.5)
        await wait_until(lambda: in_read_model(expiring.pool, "uploads", doomed, chunks_received=2))
        first = await cleanup(admin)
        assert first["expired"] >= 1
        assert not await blobs.exists(orphan) and not files.path_of(orphan_file).exists()
        assert first["bytes_freed"] >= 100 + blobs.max_bytes + 1
        # The expired upload's chunks were released just now: kept for the grace, in case
        # something read them a moment before.
        assert await stored("upload") and await stored("shared") and await stored("file")

        freed = first["bytes_freed"]

        async def upload_chunk_collected() -> bool:
            nonlocal freed
            freed += (await cleanup(admin))["bytes_freed"]
            return not await stored("upload")

        await wait_until(upload_chunk_collected, timeout=30, interval=0.5)
        assert freed >= CHUNK + 100
        # ...a fresh one: its PUT may still be sending its command.
        fresh = await put_raw(os.urandom(100))
        await cleanup(admin)
        assert await blobs.exists(fresh)
        # The chunk the expired upload shared with a live file stays, the file is intact.
        assert await stored("shared") and await stored("file")
        assert (await c.get(f"/v1/files/{file_id}/content")).content == only_file + shared

        # A deleted file's chunks go the same way, once the grace has passed.
        assert (await c.delete(f"/v1/files/{file_id}")).status_code == 200

        async def file_chunks_collected() -> bool:
            await cleanup(admin)
            return not await stored("file") and not await stored("shared")

        await wait_until(file_chunks_collected, timeout=30, interval=0.5)
    await blobs.close()


async def test_an_idempotency_key_sent_twice_is_refused_and_creates_nothing(
    shared_system: System,
) -> None:
    """Two Idempotency-Keys on one request: the first was used and the second ignored, so a
    retry sending only the second (or a proxy that kept the other) made a second upload.
    Which one counts is a guess: the request is refused, before anything is claimed."""
    me = user()
    k1, k2 = key(), key()
    body = {"file_name": "a.bin", "file_size": 3 * CHUNK, "chunk_size": CHUNK}
    async with shared_system.client(me) as c:
        r = await c.post(
            "/v1/uploads", json=body, headers=[("Idempotency-Key", k1), ("Idempotency-Key", k2)]
        )
        err = assert_error(r, 400, "invalid_idempotency_key")
        assert err["details"] == {"header": "Idempotency-Key"}
        # Neither key was claimed: each one alone makes its upload (so two in all).
        first = await c.post("/v1/uploads", json=body, headers={"Idempotency-Key": k1})
        second = await c.post("/v1/uploads", json=body, headers={"Idempotency-Key": k2})
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert "idempotent-replayed" not in first.headers
        assert "idempotent-replayed" not in second.headers
        assert first.json()["id"] != second.json()["id"]
    assert await count_events(shared_system.pool, "UploadInitiated", owner=me) == 2
