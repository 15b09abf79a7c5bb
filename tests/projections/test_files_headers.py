"""The files read model keeps a version's stored HTTP headers (readmodel.files.headers) as
the aggregate has them: set by FileCreated and FileReplaced, kept by FileUpdated and a
delete, {} for a file without any; the listings read them; a rebuild gives the same rows;
migration 0028 gives the rows recorded before it what a rebuild gives."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain import files, policies
from domain.commands import DeleteFile, UpdateFile
from domain.events import RecordedEvent
from domain.files.keys import object_file_id
from projections.object_queries import list_objects
from projections.queries import list_files
from projections.rebuild import rebuild
from tests.projections.conftest import T0, LiveProjector, Publisher, Writer, sha, snapshot

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0028_file_headers.sql"

GZIP = {"cache-control": "public, max-age=3600", "content-encoding": "gzip"}
LANG = {"content-language": "en-GB", "expires": "Wed, 21 Oct 2037 07:28:00 GMT"}


def put(key: str, text: str, minutes: int, headers: dict[str, str]) -> policies.PutObject:
    return policies.put_object(
        bucket="site", key=key, owner="hana", size=len(text), sha256=sha(text),
        manifest=[(sha(text), len(text))], content_type="text/css", caller="hana",
        at=T0 + timedelta(minutes=minutes), headers=headers,
    )  # fmt: skip


async def _history(writer: Writer) -> tuple[list[RecordedEvent], dict[str, dict[str, str]]]:
    """Objects whose headers every event kind touches, and a plain file: their events and
    the headers each row must end with (by file id)."""
    ids = {k: object_file_id("site", k) for k in ("kept", "replaced", "gone", "again")}
    at = T0 + timedelta(minutes=10)
    events: list[RecordedEvent] = []
    for cmd in [
        put("kept", "a", 1, GZIP),
        # A metadata change (FileUpdated) keeps them.
        UpdateFile(aggregate_id=ids["kept"], caller="hana", at=at, metadata={"k": "v"}),
        put("replaced", "b", 2, GZIP),
        put("replaced", "bb", 3, LANG),  # FileReplaced: the new version's, only
        put("gone", "c", 4, LANG),
        DeleteFile(aggregate_id=ids["gone"], caller="hana", at=at),  # kept on the row
        put("again", "d", 5, GZIP),
        DeleteFile(aggregate_id=ids["again"], caller="hana", at=at),
        put("again", "dd", 6, {}),  # created again without any: none
    ]:
        events += await writer.run(cmd)
    _, plain, more = await writer.upload("hana", "plain.bin", 10, bucket="site")
    assert plain is not None
    events += more
    expected = {
        ids["kept"]: GZIP,
        ids["replaced"]: LANG,
        ids["gone"]: LANG,
        ids["again"]: {},
        plain: {},
    }
    return events, expected


async def _headers(pool: asyncpg.Pool) -> dict[str, dict[str, str]]:
    rows = await pool.fetch("SELECT id, headers FROM readmodel.files WHERE owner = 'hana'")
    return {str(r["id"]): r["headers"] for r in rows}


async def test_live_rebuilt_and_migrated_rows_have_the_aggregates_headers(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    events, expected = await _history(writer)
    await projector.caught_up(await publisher.send(events))
    assert await _headers(pool) == expected
    # The aggregate, folded from the log, says the same.
    store = PostgresEventStore(pool)
    for fid, headers in expected.items():
        st = files.AGGREGATE.fold(await store.read_stream(f"file-{fid}"))
        assert st is not None and st.headers == headers

    # Both listings show them, {} when none.
    page = await list_objects(pool, "site", "hana")
    assert {o["key"]: o["headers"] for o in page.objects} == {
        "again": {},
        "kept": GZIP,
        "replaced": LANG,
    }
    items, total = await list_files(pool, "hana", bucket="site")
    assert total == 4 and {i["id"]: i["headers"] for i in items} == {
        k: v for k, v in expected.items() if k != object_file_id("site", "gone")
    }
    live = await snapshot(pool)

    await rebuild(pool, "files")
    assert await snapshot(pool) == live

    # Rows as the projection before 0028 left them (the column's default). The migration
    # gives them what a rebuild gives.
    await pool.execute("UPDATE readmodel.files SET headers = '{}'")
    assert await snapshot(pool) != live
    await pool.execute(MIGRATION.read_text())
    assert await snapshot(pool) == live

    # A row the projector has not brought up to its stream's end gets the headers of the
    # events it has applied: the later FileReplaced writes its own when it is applied.
    replaced = uuid.UUID(object_file_id("site", "replaced"))
    await pool.execute(
        "UPDATE readmodel.files SET headers = '{}', last_version = 1 WHERE id = $1", replaced
    )
    await pool.execute(MIGRATION.read_text())
    assert (
        await pool.fetchval("SELECT headers FROM readmodel.files WHERE id = $1", replaced) == GZIP
    )

    # The analysts' view has them too.
    viewed = await pool.fetchval(
        "SELECT headers FROM readmodel.live_files WHERE id = $1",
        uuid.UUID(object_file_id("site", "kept")),
    )
    assert viewed == GZIP
