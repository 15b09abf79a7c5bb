"""The files read model follows an object's versions: created with its key, replaced in
place (new content, Last-Modified = the version's time), deleted, and created again under
the same id; ListObjectsV2 reads exactly the live rows in key order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.commands import DeleteFile
from domain.files.keys import object_file_id
from projections.base import apply_event
from projections.files import FilesProjection
from projections.object_queries import Bound, list_objects, lower_bound, successor
from projections.rebuild import rebuild
from tests.projections.conftest import T0, Writer, sha


def put(key: str, text: str, minutes: int) -> policies.PutObject:
    return policies.put_object(
        bucket="pics", key=key, owner="alice", size=len(text), sha256=sha(text),
        manifest=[(sha(text), len(text))], content_type="text/plain", caller="alice",
        at=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


async def test_an_objects_row_follows_its_versions(
    pool: asyncpg.Pool, writer: Writer, event_store: PostgresEventStore
) -> None:
    events = []
    events += await writer.run(put("a/b", "one", 1))
    events += await writer.run(put("a/b", "two!", 2))
    fid = object_file_id("pics", "a/b")
    p = FilesProjection()

    async def row() -> asyncpg.Record:
        r = await pool.fetchrow("SELECT * FROM readmodel.files WHERE id = $1", uuid.UUID(fid))
        assert r is not None
        return r

    async def apply_all() -> None:
        async with pool.acquire() as conn, conn.transaction():
            for ev in events:
                await apply_event(conn, p, ev, event_store)

    await apply_all()
    r = await row()
    assert (r["key"], r["bucket"], r["size"], r["sha256"]) == ("a/b", "pics", 4, sha("two!"))
    assert r["created_at"] == T0 + timedelta(minutes=2) and r["deleted_at"] is None
    assert r["last_version"] == 2

    events += await writer.run(
        DeleteFile(aggregate_id=fid, caller="alice", at=T0 + timedelta(minutes=3))
    )
    events += await writer.run(put("a/b", "three", 4))  # the same key again: same row
    await apply_all()
    r = await row()
    assert (r["size"], r["deleted_at"], r["last_version"]) == (5, None, 4)
    page = await list_objects(pool, "pics", "alice")
    assert [o["key"] for o in page.objects] == ["a/b"] and not page.truncated


async def test_listing_bounds_and_successor(pool: asyncpg.Pool, writer: Writer) -> None:
    assert successor("a/") == "a0" and successor("") is None
    assert successor("\U0010ffff") is None and successor("a\U0010ffff") == "b"
    assert successor("\ud7ff") == "\ue000"
    # One lower bound for the index scan: the keys after `after` are those at or after
    # `after` + U+0001 (a key holds no NUL); never before the prefix.
    assert lower_bound("a/", Bound()) == "a/"
    assert lower_bound("a/", Bound(after="a/b")) == "a/b\x01"
    assert lower_bound("b/", Bound(after="a/z")) == "b/"
    assert lower_bound("", Bound(start="c")) == "c" and lower_bound("d", Bound(start="c")) == "d"
    p = FilesProjection()
    keys = ["a", "a/1", "a/2", "a0", "b/x/y", "b/z"]
    async with pool.acquire() as conn, conn.transaction():
        for i, k in enumerate(keys):
            for ev in await writer.run(put(k, k, i)):
                await p.apply(conn, ev)
    page = await list_objects(pool, "pics", "alice", delimiter="/", limit=3)
    assert [o["key"] for o in page.objects] == ["a", "a0"] and page.common_prefixes == ["a/"]
    assert page.truncated and page.next == Bound(after="a0")
    rest = await list_objects(pool, "pics", "alice", delimiter="/", bound=page.next)
    assert rest.common_prefixes == ["b/"] and not rest.truncated and rest.objects == []
    assert (await list_objects(pool, "pics", "bob")).objects == []  # only the owner's


async def test_live_files_tells_objects_from_plain_files(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    # An analyst counting a bucket's objects as ListObjectsV2 lists them reads the view's
    # key: a plain file uploaded into the bucket is in it too, with no key.
    await writer.run(put("docs/a.txt", "one", 1))
    _, plain, _ = await writer.upload("alice", "plain.bin", 10, bucket="pics")
    await rebuild(pool, "files")
    rows = await pool.fetch(
        "SELECT id::text, key FROM readmodel.live_files WHERE bucket = 'pics' ORDER BY key"
    )
    assert [(r["id"], r["key"]) for r in rows] == [
        (object_file_id("pics", "docs/a.txt"), "docs/a.txt"),
        (plain, None),
    ]
    listed = await list_objects(pool, "pics", "alice")
    keyed = await pool.fetchval(
        "SELECT count(*) FROM readmodel.live_files WHERE bucket = 'pics' AND key IS NOT NULL"
    )
    assert [o["key"] for o in listed.objects] == ["docs/a.txt"] and keyed == 1


def _reference(keys: list[str], prefix: str, delimiter: str | None) -> list[str]:
    """ListObjectsV2's entries in order, by the definition: objects and common prefixes."""
    out: list[str] = []
    for k in sorted(k for k in keys if k.startswith(prefix)):
        rest = k[len(prefix) :]
        cut = rest.find(delimiter) if delimiter else -1
        entry = k if cut < 0 else prefix + rest[: cut + len(delimiter or "")]
        if not out or out[-1] != entry:
            out.append(entry)
    return out


async def _page_through(
    pool: asyncpg.Pool, prefix: str, delimiter: str | None, limit: int
) -> list[str]:
    """Every entry of a listing, page by page (`limit` each) along its cursor; each page
    holds at most `limit` entries and only the last may be empty (an empty listing)."""
    seen: list[str] = []
    bound = None
    while True:
        page = await list_objects(
            pool, "pics", "alice", prefix=prefix, delimiter=delimiter, bound=bound, limit=limit
        )
        entries = sorted([o["key"] for o in page.objects] + page.common_prefixes)
        assert 0 < len(entries) <= limit or (not entries and not seen)
        seen += entries
        if not page.truncated:
            return seen
        assert page.next is not None
        bound = page.next


async def test_paging_with_runs_of_folders_and_objects(pool: asyncpg.Pool, writer: Writer) -> None:
    # Runs of objects longer than the few rows read after a jump past a folder (the read
    # then grows), folders next to folders, and pages of every size across both.
    keys = [f"{d}/{i}" for d in "abcdefghij" for i in range(3)]
    keys += [f"b{i:02}" for i in range(40)] + [f"f{i:02}" for i in range(9)] + ["k/x/y", "z"]
    p = FilesProjection()
    async with pool.acquire() as conn, conn.transaction():
        for i, k in enumerate(keys):
            for ev in await writer.run(put(k, k, i)):
                await p.apply(conn, ev)
    for prefix, delimiter in (("", "/"), ("", None), ("k/", "/"), ("b", "/")):
        want = _reference(keys, prefix, delimiter)
        for limit in (1, 2, 3, 7, 8, 9, 33, 1000):
            seen = await _page_through(pool, prefix, delimiter, limit)
            assert seen == want, (prefix, delimiter, limit)


async def test_paging_with_awkward_delimiters(pool: asyncpg.Pool, writer: Writer) -> None:
    # The jumps past common prefixes run in PostgreSQL for most delimiters: keys holding
    # the delimiter several times (and overlapping with itself), delimiters of several
    # characters, outside the BMP, at the surrogate gap (U+D7FF's successor is U+E000),
    # and ending in U+10FFFF (no successor without a carry: the listing jumps in Python).
    keys = ["a/b/c", "a//", "a/", "aa", "ab", "a-+-x", "a-+-", "a-+-+-y", "a--", "x"]
    keys += ["p\ud7ffq", "p\ud7ff\ud7ffr", "p\ue000", "p\U0001f600/1", "p\U0001f600\U0001f600"]
    keys += ["q\U0010ffff1", "q\U0010ffff\U0010ffff2", "q\U0010ffff", "r\U0010ffff"]
    keys += ["s\U0010ffff/", "s\U0010ffff0"]
    p = FilesProjection()
    async with pool.acquire() as conn, conn.transaction():
        for i, k in enumerate(keys):
            for ev in await writer.run(put(k, k, i)):
                await p.apply(conn, ev)
    cases = [("", d) for d in ("/", "//", "-+-", "a", "\ud7ff", "\U0001f600", "\U0010ffff")]
    cases += [("a", "/"), ("a-", "+-"), ("p", "\ud7ff"), ("q", "\U0010ffff"), ("s\U0010ffff", "/")]
    cases += [("", "+-\U0010ffff"), ("a/", "/")]
    for prefix, delimiter in cases:
        want = _reference(keys, prefix, delimiter)
        for limit in (1, 2, 3, 1000):
            seen = await _page_through(pool, prefix, delimiter, limit)
            assert seen == want, (prefix, delimiter, limit)
