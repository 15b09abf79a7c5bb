"""The uploads read model keeps an upload's stored HTTP headers (readmodel.uploads.headers,
the ones the object it becomes gets) as its UploadInitiated has them, {} for an upload
without any; the listing reads them; a rebuild gives the same rows; migration 0029 gives
the rows recorded before it what a rebuild gives."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from domain.commands import InitiateUpload
from domain.events import RecordedEvent
from projections.queries import get_upload, list_uploads
from projections.rebuild import rebuild
from tests.projections.conftest import T0, LiveProjector, Publisher, Writer, snapshot

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0029_upload_headers.sql"

GZIP = {"cache-control": "public, max-age=3600", "content-encoding": "gzip"}


def into_key(key: str, headers: dict[str, str]) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=str(uuid.uuid4()), caller="hana", at=T0, file_name=key, file_size=10,
        chunk_size=10, bucket="site", key=key, headers=headers,
    )  # fmt: skip


async def _history(writer: Writer) -> tuple[list[RecordedEvent], dict[str, dict[str, str]]]:
    """An upload into a key with headers, one without, and a plain (completed) upload:
    their events and the headers each row must end with (by upload id)."""
    with_them, without = into_key("app.css", GZIP), into_key("app.js", {})
    events = await writer.run(with_them) + await writer.run(without)
    plain, _, more = await writer.upload("hana", "plain.bin", 10, bucket="site")
    events += more
    return events, {with_them.aggregate_id: GZIP, without.aggregate_id: {}, plain: {}}


async def _headers(pool: asyncpg.Pool) -> dict[str, dict[str, str]]:
    rows = await pool.fetch("SELECT id, headers FROM readmodel.uploads WHERE owner = 'hana'")
    return {str(r["id"]): r["headers"] for r in rows}


async def test_live_rebuilt_and_migrated_rows_have_the_initiated_headers(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    events, expected = await _history(writer)
    await projector.caught_up(await publisher.send(events))
    assert await _headers(pool) == expected

    # The listing and the single upload show them, {} when none.
    items, total = await list_uploads(pool, "hana")
    assert total == 3 and {i["id"]: i["headers"] for i in items} == expected
    for uid, headers in expected.items():
        row = await get_upload(pool, uid, "hana")
        assert row is not None and row["headers"] == headers
    live = await snapshot(pool)

    await rebuild(pool, "uploads")
    assert await snapshot(pool) == live

    # Rows as the projection before 0029 left them (the column's default). The migration
    # gives them what a rebuild gives.
    await pool.execute("UPDATE readmodel.uploads SET headers = '{}'")
    assert await snapshot(pool) != live
    await pool.execute(MIGRATION.read_text())
    assert await snapshot(pool) == live
