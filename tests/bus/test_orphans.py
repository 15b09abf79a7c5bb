"""No object is left live in a bucket that is gone (bus/orphans.py, run with the cleanup).

A write checks its bucket and then sends its command; a DELETE of the bucket in between
finds nothing to delete and the file is created after it: live, counted against its
owner's quota, in no bucket that exists. The race's outcome is made directly here: the
bucket deleted, then the command the late request would have sent applied through the
command bus. Whole system (real Postgres, broker, actors, projector)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio

from bus.actors.commandbus import CommandBus
from bus.orphans import sweep_orphans
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from domain import policies
from domain.commands import CreateFile
from tests.api.routes.test_uploads_complete import upload_file
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def osys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """A system whose periodic cleanup does not run during the tests (each sweep is
    started by the test); tests isolate themselves by distinct users and buckets."""
    async with isolated_system(pg_server.url, kafka_server.bootstrap, cleanup_interval=3600.0) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus(osys: System) -> AsyncIterator[CommandBus]:
    """A command bus of the test's own, as a late API request's."""
    b = CommandBus(osys.settings, service="late-writer", pool=osys.pool)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def make_bucket(c: httpx.AsyncClient, bucket: str) -> None:
    r = await c.post("/v1/buckets", json={"name": bucket})
    assert r.status_code == 201, r.text


async def drop_bucket(c: httpx.AsyncClient, bucket: str) -> None:
    r = await c.delete(f"/v1/buckets/{bucket}", params={"force": "true"})
    assert r.status_code == 200, r.text


async def late_file(bus: CommandBus, owner: str, bucket: str, *, object_key: str | None) -> str:
    """What a request that checked `bucket` before its deletion sends after it: a plain
    file into the bucket (an upload's, a copy task's), or the object `object_key` (a PUT,
    a move's copy). Applied through the command bus, as the request would; its id."""
    data = secrets.token_bytes(1000)
    sha = hashlib.sha256(data).hexdigest()
    manifest = [{"sha256": sha, "size": len(data)}]
    at = datetime.now(UTC)
    if object_key is not None:
        cmd = policies.put_object(
            bucket=bucket, key=object_key, owner=owner, size=len(data), sha256=sha,
            manifest=manifest, content_type="application/octet-stream", caller=owner, at=at,
        )  # fmt: skip
    else:
        cmd = CreateFile(
            aggregate_id=str(uuid.uuid4()), caller=owner, at=at, owner=owner, name="late.bin",
            size=len(data), content_type="application/octet-stream", sha256=sha,
            manifest=manifest, bucket=bucket,
        )  # fmt: skip
    result = await bus.send(cmd)
    assert result.applied
    return cmd.aggregate_id


async def row(s: System, file_id: str) -> tuple[bool, str] | None:
    """(live, bucket) of the file's read-model row, None while it has none."""
    r = await s.pool.fetchrow(
        "SELECT deleted_at IS NULL AS live, bucket FROM readmodel.files WHERE id = $1",
        uuid.UUID(file_id),
    )
    return None if r is None else (bool(r["live"]), str(r["bucket"]))


async def until_row(s: System, file_id: str, live: bool) -> None:
    async def there() -> bool:
        got = await row(s, file_id)
        return got is not None and got[0] is live

    await wait_until(there, timeout=30)


async def usage_bytes(s: System, owner: str) -> int:
    """What the quota counts for `owner` (readmodel.owner_totals)."""
    got = await s.pool.fetchval("SELECT bytes FROM readmodel.owner_totals WHERE owner = $1", owner)
    return int(got or 0)


async def deletions(s: System, file_id: str) -> int:
    return int(
        await s.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE stream_id = $1"
            " AND event_type = 'FileDeleted'",
            f"file-{file_id}",
        )
    )


async def run_cleanup(s: System) -> dict[str, int]:
    async with s.client("root", admin=True) as admin:
        r = await admin.post("/v1/admin/cleanup")
    assert r.status_code == 200, r.text
    report: dict[str, int] = r.json()
    return report


@pytest.mark.parametrize("object_key", [None, "late/key.bin"], ids=["file", "object"])
async def test_a_file_made_after_its_bucket_went_is_deleted_by_the_sweep(
    osys: System, bus: CommandBus, object_key: str | None
) -> None:
    me, bucket = name("orph"), name("gone")
    async with osys.client(me) as c:
        await make_bucket(c, bucket)
        await drop_bucket(c, bucket)
        file_id = await late_file(bus, me, bucket, object_key=object_key)
        # The hole: the file is live, labelled with a bucket that does not exist, and
        # counts against its owner's quota; no bucket route reaches it.
        await until_row(osys, file_id, live=True)
        assert await row(osys, file_id) == (True, bucket)
        assert (await c.get(f"/v1/files/{file_id}")).status_code == 200
        assert (await c.get(f"/v1/buckets/{bucket}")).status_code == 404
        assert await usage_bytes(osys, me) == 1000

        report = await run_cleanup(osys)
        # The sweep's DeleteFile is applied (its reply awaited) before the run answers.
        assert await deletions(osys, file_id) == 1
        assert report["orphans_deleted"] >= 1
        await until_row(osys, file_id, live=False)
        assert await usage_bytes(osys, me) == 0
        assert (await c.get(f"/v1/files/{file_id}")).status_code == 404


async def test_files_in_a_live_bucket_or_in_none_are_never_touched(
    osys: System, bus: CommandBus
) -> None:
    """Beside an orphan the same run deletes (so the run did look): an object of a live
    bucket, a plain file in no bucket (a native upload), a file left in a bucket its owner
    made again before the sweep (it stays, as if put there), and another user's file
    labelled with a live bucket made before it (as an admin's fetch into a user's bucket
    makes): none is deleted."""
    me, other = name("keep"), name("keep-other")
    live, back, gone = name("live"), name("back"), name("gone")
    async with osys.client(me) as c:
        for b in (live, back, gone):
            await make_bucket(c, b)
        r = await c.put(f"/v1/buckets/{live}/objects/a/b.txt", content=b"kept object")
        assert r.status_code == 201, r.text
        in_live = str(r.json()["id"])
        plain = await upload_file(c, b"a file in no bucket")
        await drop_bucket(c, back)
        in_back = await late_file(bus, me, back, object_key="old/one.bin")
        await make_bucket(c, back)
        labelled = await late_file(bus, other, live, object_key=None)
        await drop_bucket(c, gone)
        orphan = await late_file(bus, me, gone, object_key=None)
        kept = (in_live, plain, in_back, labelled)
        for f in (*kept, orphan):
            await until_row(osys, f, live=True)

        await run_cleanup(osys)
        assert await deletions(osys, orphan) == 1
        await until_row(osys, orphan, live=False)
        for f in kept:
            assert await deletions(osys, f) == 0, f
            assert (await row(osys, f) or (False, ""))[0], f
        got = await c.get(f"/v1/buckets/{back}/objects")
        assert [o["key"] for o in got.json()["items"]] == ["old/one.bin"]


async def test_another_users_bucket_of_the_same_name_shelters_no_orphan(
    osys: System, bus: CommandBus
) -> None:
    """The name deleted and taken by someone else: the old owner's late object is not in
    the new bucket (its objects are its owner's files), and the sweep deletes it; the new
    owner's objects stay."""
    ann, bob, bucket = name("ann"), name("bob"), name("taken")
    async with osys.client(ann) as a, osys.client(bob) as b:
        await make_bucket(a, bucket)
        await drop_bucket(a, bucket)
        orphan = await late_file(bus, ann, bucket, object_key="ann/late.bin")
        await make_bucket(b, bucket)
        r = await b.put(f"/v1/buckets/{bucket}/objects/bob/own.txt", content=b"bob's")
        assert r.status_code == 201, r.text
        bobs = str(r.json()["id"])
        await until_row(osys, orphan, live=True)
        await until_row(osys, bobs, live=True)
        listed = (await b.get(f"/v1/buckets/{bucket}/objects")).json()["items"]
        assert [o["key"] for o in listed] == ["bob/own.txt"]
        # Nor read through it (the key's id is the same: the object's owner is checked).
        assert (await b.get(f"/v1/buckets/{bucket}/objects/ann/late.bin")).status_code == 404
        assert (await b.get(f"/v1/buckets/{bucket}")).json()["usage"]["objects"] == 1
        assert await usage_bytes(osys, ann) == 1000

        await run_cleanup(osys)
        assert await deletions(osys, orphan) == 1
        await until_row(osys, orphan, live=False)
        assert await usage_bytes(osys, ann) == 0
        assert await deletions(osys, bobs) == 0
        got = await b.get(f"/v1/buckets/{bucket}/objects/bob/own.txt")
        assert got.status_code == 200 and got.content == b"bob's"


async def test_sweeps_at_once_and_again_delete_each_orphan_once(
    osys: System, bus: CommandBus
) -> None:
    """Two processes sweeping at once (two command buses, the cleanup lock bypassed), and a
    third run after them as a retry after a crash would: each orphan gets one deletion,
    and the runs together count each once."""
    me, bucket = name("twice"), name("gone")
    async with osys.client(me) as c:
        await make_bucket(c, bucket)
        await drop_bucket(c, bucket)
        mine = [await late_file(bus, me, bucket, object_key=k) for k in ("x", "y/z", None, None)]
    for f in mine:
        await until_row(osys, f, live=True)
    other = CommandBus(osys.settings, service="second-sweeper", pool=osys.pool)
    await other.start()
    try:
        now = datetime.now(UTC)
        counts = await asyncio.gather(
            sweep_orphans(osys.pool, bus, now), sweep_orphans(osys.pool, other, now)
        )
        # Again at once, as a run retried after a crash: the read model may still list
        # them, their streams say they are gone.
        again = await sweep_orphans(osys.pool, other, datetime.now(UTC))
    finally:
        await other.stop()
    assert sum(counts) + again == len(mine)
    assert again == 0
    for f in mine:
        assert await deletions(osys, f) == 1, f
        await until_row(osys, f, live=False)


@pytest.mark.timeout(120)
async def test_the_handlers_process_sweeps_orphans_by_itself(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap, cleanup_interval=0.3) as s:
        late = CommandBus(s.settings, service="late-writer", pool=s.pool)
        await late.start()
        try:
            me, bucket = name("auto"), name("gone")
            async with s.client(me) as c:
                await make_bucket(c, bucket)
                await drop_bucket(c, bucket)
                orphan = await late_file(late, me, bucket, object_key="k")
        finally:
            await late.stop()
        await until_row(s, orphan, live=False)
        assert await deletions(s, orphan) == 1
        assert await usage_bytes(s, me) == 0
