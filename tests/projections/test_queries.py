"""The API's read functions: isolation, sorting, paging, filters, stats, output shape.

The read models are filled by `rebuild`, the same apply path as the live projector, so these
tests need no broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from domain.commands import AbortUpload
from domain.fetches.commands import RecordFetchResponse, RequestFetch, StartFetch
from projections import fetch_queries, queries
from projections.rebuild import rebuild
from tests.projections.conftest import T0, Writer


async def rebuild_all(pool: asyncpg.Pool) -> None:
    await rebuild(pool, "uploads")
    await rebuild(pool, "files")


async def test_owner_isolation(pool: asyncpg.Pool, writer: Writer) -> None:
    a_uid, a_fid, _ = await writer.upload("alice", "a.txt", 100)
    b_uid, b_fid, _ = await writer.upload("bob", "b.txt", 100)
    await writer.upload("bob", "b2.txt", 100, complete=False)
    assert a_fid and b_fid
    await rebuild_all(pool)

    page, total = await queries.list_uploads(pool, "alice")
    assert total == 1 and [u["id"] for u in page] == [a_uid]
    assert await queries.get_upload(pool, b_uid, "alice") is None
    assert (await queries.get_upload(pool, b_uid, "bob") or {})["owner"] == "bob"
    assert (await queries.get_upload(pool, b_uid, None) or {})["id"] == b_uid  # admin
    _, total = await queries.list_uploads(pool, None)
    assert total == 3

    files, total = await queries.list_files(pool, "alice")
    assert total == 1 and [f["id"] for f in files] == [a_fid]
    assert await queries.get_file(pool, b_fid, "alice") is None
    assert (await queries.get_file(pool, b_fid, "bob") or {})["name"] == "b.txt"
    assert (
        await queries.find_file_by_sha256(
            pool, "alice", (await queries.get_file(pool, b_fid, None) or {})["sha256"]
        )
        is None
    )
    stats = await queries.upload_stats(pool, "alice")
    assert stats["total"] == 1

    # Ids that are not uuids are simply not found.
    assert await queries.get_upload(pool, "not-a-uuid", None) is None
    assert await queries.get_file(pool, "'; DROP TABLE readmodel.files; --", None) is None


async def test_upload_dict_shape(pool: asyncpg.Pool, writer: Writer) -> None:
    uid, fid, _ = await writer.upload("alice", "shape.bin", 250)
    part, _, _ = await writer.upload("alice", "part.bin", 400, chunks=1, complete=False)
    empty, _, _ = await writer.upload("alice", "empty.bin", 0, complete=False)
    await rebuild_all(pool)

    u = await queries.get_upload(pool, uid, "alice")
    assert u is not None
    orjson.dumps(u)  # JSON-friendly as it is
    assert {
        "id",
        "file_name",
        "file_size",
        "chunk_size",
        "total_chunks",
        "chunks_received",
        "bytes_received",
        "progress",
        "status",
        "content_type",
        "bucket",
        "metadata",
        "file_id",
        "created_at",
        "updated_at",
        "completed_at",
    } <= set(u)
    assert u["file_id"] == fid and u["progress"] == 100.0 and u["status"] == "COMPLETED"
    assert datetime.fromisoformat(u["created_at"]) == T0
    assert datetime.fromisoformat(u["completed_at"]) == T0 + timedelta(seconds=4)
    assert u["metadata"] == {"k": "shape.bin"}

    p = await queries.get_upload(pool, part, "alice")
    assert p is not None
    assert p["progress"] == 25.0 and p["completed_at"] is None and p["file_id"] is None
    e = await queries.get_upload(pool, empty, "alice")
    assert e is not None and e["progress"] == 100.0 and e["status"] == "INITIATED"

    f = await queries.get_file(pool, fid or "", "alice")
    assert f is not None
    orjson.dumps(f)
    assert (f["name"], f["size"], f["chunk_count"], f["upload_id"]) == ("shape.bin", 250, 3, uid)


async def test_upload_sort_order_paging_and_status(pool: asyncpg.Pool, writer: Writer) -> None:
    # Names, sizes and times deliberately in different orders.
    specs = [
        ("delta", 400, 3),
        ("alpha", 100, 0),
        ("echo", 500, 1),
        ("charlie", 300, 4),
        ("bravo", 200, 2),
    ]
    ids = {}
    for name, size, minute in specs:
        ids[name], _, _ = await writer.upload(
            "alice", name, size, at=T0 + timedelta(minutes=minute), complete=name != "echo"
        )
    await writer.upload("bob", "zzz", 1)
    await rebuild_all(pool)

    async def names(**kw: object) -> list[str]:
        page, total = await queries.list_uploads(pool, "alice", **kw)  # type: ignore[arg-type]
        assert total == (1 if kw.get("status") == "in_progress" else 5)
        return [u["file_name"] for u in page]

    assert await names(sort="file_name", order="asc") == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]
    assert await names(sort="file_name", order="desc") == [
        "echo",
        "delta",
        "charlie",
        "bravo",
        "alpha",
    ]
    assert await names(sort="file_size", order="asc") == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]
    assert await names(sort="created_at", order="asc") == [
        "alpha",
        "echo",
        "bravo",
        "delta",
        "charlie",
    ]
    assert await names() == ["charlie", "delta", "bravo", "echo", "alpha"]  # created_at desc
    # echo is the only one not completed, so it was updated last of the ones... by time:
    # completion happens `total_chunks + 1` seconds after initiation.
    assert (await names(sort="updated_at", order="desc"))[0] == "charlie"

    # Paging: consecutive pages tile the full ordering; the total is the full count.
    full = await names(sort="file_size", order="desc")
    pages = []
    for offset in (0, 2, 4):
        pages += await names(sort="file_size", order="desc", limit=2, offset=offset)
    assert pages == full
    assert await names(sort="file_size", order="desc", limit=2, offset=10) == []

    assert await names(status="in_progress") == ["echo"]
    page, total = await queries.list_uploads(pool, "alice", status="COMPLETED")
    assert total == 4 and {u["status"] for u in page} == {"COMPLETED"}


@pytest.mark.parametrize(
    "kw",
    [
        {"sort": "owner"},
        {"sort": "created_at; DROP TABLE readmodel.uploads"},
        {"sort": "CREATED_AT"},
        {"order": "sideways"},
        {"order": "desc; --"},
        {"limit": 0},
        {"limit": 100_000},
        {"offset": -1},
        {"status": "DONE"},
    ],
)
async def test_bad_list_arguments_are_value_errors(
    pool: asyncpg.Pool, kw: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        await queries.list_uploads(pool, "alice", **kw)  # type: ignore[arg-type]


async def test_bad_file_sort_is_a_value_error(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        await queries.list_files(pool, "alice", sort="file_name")
    with pytest.raises(ValueError):
        await queries.list_files(pool, "alice", created_after="yesterday")


async def test_upload_stats_numbers(pool: asyncpg.Pool, writer: Writer) -> None:
    now = datetime.now(UTC)
    at = now - timedelta(minutes=30)
    await writer.upload("alice", "done1", 250, at=at)  # completed: 250 bytes
    await writer.upload("alice", "done2", 100, at=at)  # completed: 100 bytes
    await writer.upload("alice", "half", 400, chunks=2, complete=False, at=at)  # 200 of 400
    await writer.upload("alice", "new", 50, chunks=0, complete=False, at=at)  # 0 of 50
    gone, _, _ = await writer.upload("alice", "gone", 300, chunks=1, complete=False, at=at)
    await writer.run(AbortUpload(aggregate_id=gone, caller="alice", at=at + timedelta(minutes=1)))
    await writer.upload("bob", "other", 999, at=at)
    await rebuild_all(pool)

    s = await queries.upload_stats(pool, "alice", now=now)
    assert s["total"] == 5
    assert s["by_status"] == {
        "INITIATED": 1,
        "IN_PROGRESS": 1,
        "COMPLETED": 2,
        "FAILED": 0,
        "ABORTED": 1,
        "EXPIRED": 0,
        "PARTIAL_COMPLETE": 0,
    }
    assert s["active"] == 2
    assert s["bytes_received"] == 250 + 100 + 200 + 0 + 100
    assert s["bytes_completed"] == 350
    assert s["bytes_pending"] == 200 + 50
    assert datetime.fromisoformat(s["last_activity_at"]) == at + timedelta(minutes=1)
    assert len(s["recent"]) == 7 and s["recent"][-1]["day"] == now.date().isoformat()
    assert sum(d["uploads_started"] for d in s["recent"]) == 5
    assert sum(d["uploads_completed"] for d in s["recent"]) == 2
    assert sum(d["bytes_uploaded"] for d in s["recent"]) == 650
    orjson.dumps(s)

    # The analysts' view agrees.
    row = await pool.fetchrow("SELECT * FROM readmodel.upload_stats WHERE owner = 'alice'")
    assert (row["uploads_total"], row["completed"], row["bytes_received"]) == (5, 2, 650)

    # Nothing for a stranger, and a window that excludes everything.
    empty = await queries.upload_stats(pool, "nobody", now=now)
    assert empty["total"] == 0 and empty["last_activity_at"] is None
    later = await queries.upload_stats(pool, "alice", now=now + timedelta(days=30))
    assert sum(d["uploads_started"] for d in later["recent"]) == 0


async def test_file_filters(pool: asyncpg.Pool, writer: Writer) -> None:
    made = {}
    for i, (name, bucket, ctype) in enumerate(
        [
            ("photos-cat.jpg", "media", "image/jpeg"),
            ("photos-dog.png", "media", "image/png"),
            ("photos_backup.zip", "media", "application/zip"),
            ("photosXcat.jpg", "media", "image/jpeg"),
            ("100%_real.txt", "docs", "text/plain"),
            ("100x_real.txt", "docs", "text/plain"),
            ("notes.txt", "docs", "text/plain"),
        ]
    ):
        _, fid, _ = await writer.upload(
            "alice", name, 10, at=T0 + timedelta(minutes=i), bucket=bucket, content_type=ctype
        )
        made[name] = fid
    await writer.upload("bob", "photos-bob.jpg", 10, bucket="media", content_type="image/jpeg")
    await writer.delete_file("alice", made["notes.txt"] or "", T0 + timedelta(hours=1))
    await rebuild_all(pool)

    async def names(**kw: object) -> tuple[list[str], int]:
        page, total = await queries.list_files(pool, "alice", sort="name", order="asc", **kw)  # type: ignore[arg-type]
        return [f["name"] for f in page], total

    everything, total = await names()
    assert total == 6 and "notes.txt" not in everything  # deleted files are not listed
    assert set((await names(bucket="docs"))[0]) == {"100%_real.txt", "100x_real.txt"}
    # Wildcards in the prefix match literally: `_` is not "any character", `%` not "anything".
    assert (await names(name_prefix="photos_"))[0] == ["photos_backup.zip"]
    assert (await names(name_prefix="photos-"))[0] == ["photos-cat.jpg", "photos-dog.png"]
    assert (await names(name_prefix="100%"))[0] == ["100%_real.txt"]
    assert (await names(name_prefix="%"))[0] == []
    assert (await names(content_type="image/jpeg"))[0] == ["photos-cat.jpg", "photosXcat.jpg"]
    assert (await names(content_type="image/*"))[1] == 3
    # The family's type matches literally too; a `*` anywhere else is no filter at all
    # (`*/*` answered an empty list, as if nothing matched): refused.
    assert (await names(content_type="imag_/*"))[1] == 0
    assert (await names(content_type="%/*"))[1] == 0
    for bad in ("*/*", "*", "/*", "image/j*", "image/**"):
        with pytest.raises(ValueError, match="content_type"):
            await names(content_type=bad)
    after, total = await names(
        created_after=T0 + timedelta(minutes=2), created_before=T0 + timedelta(minutes=4)
    )
    assert set(after) == {"photos_backup.zip", "photosXcat.jpg"} and total == 2
    iso, _ = await names(created_after=(T0 + timedelta(minutes=5)).isoformat())
    assert iso == ["100x_real.txt"]
    page, total = await queries.list_files(pool, "alice", sort="created_at", order="desc", limit=2)
    assert total == 6 and [f["name"] for f in page] == ["100x_real.txt", "100%_real.txt"]

    cat = await queries.get_file(pool, made["photos-cat.jpg"] or "", "alice")
    assert cat is not None
    found = await queries.find_file_by_sha256(pool, "alice", cat["sha256"])
    assert found is not None and found["id"] == cat["id"]
    assert await queries.get_file(pool, made["notes.txt"] or "", "alice") is None


async def test_a_fetch_of_an_empty_body_lists_the_progress_its_own_view_shows(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    # GET /v1/fetches/{id} answers progress 0.0 for a fetch whose origin announced an
    # empty body (total 0) and that has not completed; the list answered null for it.
    fid = str(uuid.uuid4())
    await writer.run(
        RequestFetch(aggregate_id=fid, caller="fay", at=T0, owner="fay", url="http://o/empty")
    )
    await writer.run(StartFetch(aggregate_id=fid, caller="fay", at=T0, runner="r"))
    await writer.run(
        RecordFetchResponse(
            aggregate_id=fid, caller="fay", at=T0, runner="r", restart=False, total=0
        )
    )
    await rebuild(pool, "fetches")
    items, total = await fetch_queries.page(
        pool, "fay", url=None, status=None, sort="created_at", order="desc", limit=10, offset=0
    )
    assert total == 1 and items[0]["total"] == 0 and items[0]["status"] == "IN_PROGRESS"
    assert items[0]["progress"] == 0.0


async def test_a_page_and_its_total_come_together(pool: asyncpg.Pool, writer: Writer) -> None:
    # The page and X-Total-Count come from one statement: every page, including one past
    # the end and one of nothing, carries the total of what matches (not of the page).
    for name in ("c.txt", "a.txt", "b.txt"):
        await writer.upload("alice", name, 100)
    await writer.upload("alice", "d.txt", 100, complete=False)
    await writer.upload("bob", "z.txt", 100)
    await rebuild_all(pool)

    async def files(**kw: object) -> tuple[list[str], int]:
        page, total = await queries.list_files(pool, "alice", sort="name", order="asc", **kw)  # type: ignore[arg-type]
        return [f["name"] for f in page], total

    assert await files(limit=2) == (["a.txt", "b.txt"], 3)
    assert await files(limit=2, offset=2) == (["c.txt"], 3)
    assert await files(limit=2, offset=3) == ([], 3)
    assert await files(limit=2, offset=50) == ([], 3)
    assert await files(name_prefix="q") == ([], 0)
    page, total = await queries.list_uploads(
        pool, "alice", sort="file_name", order="desc", limit=1, offset=9
    )
    assert (page, total) == ([], 4)
    page, total = await queries.list_uploads(
        pool, "alice", sort="file_name", order="desc", limit=3, offset=1
    )
    assert [u["file_name"] for u in page] == ["c.txt", "b.txt", "a.txt"] and total == 4
