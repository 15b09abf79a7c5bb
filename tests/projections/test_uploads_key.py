"""The uploads read model keeps the object key an upload becomes (readmodel.uploads.key) as
its UploadInitiated has it, null for a plain upload; the listing and the single upload
read it; a rebuild gives the same rows; migration 0030 gives the rows recorded before it
what a rebuild gives."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from domain.commands import InitiateUpload
from domain.events import RecordedEvent
from projections.queries import get_upload, list_uploads
from projections.rebuild import rebuild
from tests.projections.conftest import T0, LiveProjector, Publisher, Writer, snapshot

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0030_upload_key.sql"


def into_key(key: str) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=str(uuid.uuid4()), caller="hana", at=T0, file_name="f", file_size=10,
        chunk_size=10, bucket="site", key=key,
    )  # fmt: skip


async def _history(writer: Writer) -> tuple[list[RecordedEvent], dict[str, str | None]]:
    """Two uploads into keys (one not ASCII) and a plain (completed) upload: their events
    and the key each row must end with (by upload id)."""
    css, odd = into_key("css/app.css"), into_key("dir/ü 名.bin")
    events = await writer.run(css) + await writer.run(odd)
    plain, _, more = await writer.upload("hana", "plain.bin", 10, bucket="site")
    events += more
    return events, {css.aggregate_id: "css/app.css", odd.aggregate_id: "dir/ü 名.bin", plain: None}


async def _keys(pool: asyncpg.Pool) -> dict[str, str | None]:
    rows = await pool.fetch("SELECT id, key FROM readmodel.uploads WHERE owner = 'hana'")
    return {str(r["id"]): r["key"] for r in rows}


async def test_live_rebuilt_and_migrated_rows_have_the_initiated_key(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    events, expected = await _history(writer)
    await projector.caught_up(await publisher.send(events))
    assert await _keys(pool) == expected

    # The listing and the single upload show it, null for a plain upload.
    items, total = await list_uploads(pool, "hana")
    assert total == 3 and {i["id"]: i["key"] for i in items} == expected
    for uid, key in expected.items():
        row = await get_upload(pool, uid, "hana")
        assert row is not None and row["key"] == key
    live = await snapshot(pool)

    await rebuild(pool, "uploads")
    assert await snapshot(pool) == live

    # Rows as the projection before 0030 left them (the new column null). The migration
    # gives them what a rebuild gives.
    await pool.execute("UPDATE readmodel.uploads SET key = NULL")
    assert await snapshot(pool) != live
    await pool.execute(MIGRATION.read_text())
    assert await snapshot(pool) == live
