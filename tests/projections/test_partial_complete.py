"""The uploads read model gives a tus partial upload with all its bytes the status the
aggregate has (PARTIAL_COMPLETE), live and rebuilt alike, and migration 0027 gives the rows
recorded before it (IN_PROGRESS, or INITIATED for an empty part) what a rebuild gives."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain import uploads
from domain.commands import AppendBytes, Command, DeclareLength, InitiateUpload
from domain.events import RecordedEvent
from projections.rebuild import rebuild
from tests.projections.conftest import T0, LiveProjector, Publisher, Writer, sha, snapshot

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0027_partial_complete.sql"


def _initiate(uid: str, size: int | None, **kw: object) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=uid,
        caller="pat",
        at=T0,
        file_name=f"part-{uid[:4]}",
        file_size=size,
        chunk_size=4,
        mode="stream",
        partial=True,
        **kw,  # type: ignore[arg-type]
    )


def _append(uid: str, offset: int, size: int) -> AppendBytes:
    return AppendBytes(
        aggregate_id=uid,
        caller="pat",
        at=T0 + timedelta(seconds=offset + 1),
        offset=offset,
        pieces=[{"sha256": sha(f"{uid}:{offset}"), "size": size}],
    )


async def _history(writer: Writer) -> tuple[list[RecordedEvent], dict[str, str]]:
    """Partial uploads finished every way, one unfinished, one whole (not partial) upload
    with all its bytes: their events and the status each must end in."""
    ids = {name: str(uuid.uuid4()) for name in ("patched", "deferred", "empty", "busy", "whole")}
    steps: list[Command] = [
        _initiate(ids["patched"], 8),
        _append(ids["patched"], 0, 5),
        _append(ids["patched"], 5, 3),
        _initiate(ids["deferred"], None),
        _append(ids["deferred"], 0, 6),
        DeclareLength(aggregate_id=ids["deferred"], caller="pat", at=T0, file_size=6),
        _initiate(ids["empty"], 0),
        _initiate(ids["busy"], 9),
        _append(ids["busy"], 0, 2),
        InitiateUpload(
            aggregate_id=ids["whole"],
            caller="pat",
            at=T0,
            file_name="whole",
            file_size=3,
            chunk_size=4,
            mode="stream",
        ),
        _append(ids["whole"], 0, 3),
    ]
    events: list[RecordedEvent] = []
    for cmd in steps:
        events += await writer.run(cmd)
    expected = {
        ids["patched"]: "PARTIAL_COMPLETE",
        ids["deferred"]: "PARTIAL_COMPLETE",
        ids["empty"]: "PARTIAL_COMPLETE",
        ids["busy"]: "IN_PROGRESS",
        ids["whole"]: "IN_PROGRESS",  # completes with its file, by CompleteUpload
    }
    return events, expected


async def _statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT id, status FROM readmodel.uploads WHERE owner = 'pat'")
    return {str(r["id"]): r["status"] for r in rows}


async def test_live_rebuilt_and_migrated_rows_have_the_aggregates_status(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    events, expected = await _history(writer)
    await projector.caught_up(await publisher.send(events))
    assert await _statuses(pool) == expected
    # The aggregate, folded from the log, says the same.
    store = PostgresEventStore(pool)
    for uid, status in expected.items():
        st = uploads.AGGREGATE.fold(await store.read_stream(f"upload-{uid}"))
        assert st is not None and st.status.value == status
    live = await snapshot(pool)

    await rebuild(pool, "uploads")
    assert await snapshot(pool) == live

    # Rows as the projection before 0027 left them: a finished part IN_PROGRESS (INITIATED
    # for an empty one). The migration gives them the status a rebuild gives.
    await pool.execute(
        "UPDATE readmodel.uploads SET status = CASE WHEN bytes_received = 0"
        " THEN 'INITIATED' ELSE 'IN_PROGRESS' END WHERE status = 'PARTIAL_COMPLETE'"
    )
    assert await snapshot(pool) != live
    await pool.execute(MIGRATION.read_text())
    assert await snapshot(pool) == live

    # The analysts' view counts them under their own column.
    row = await pool.fetchrow(
        "SELECT in_progress, partial_complete FROM readmodel.upload_stats WHERE owner = 'pat'"
    )
    assert row is not None and dict(row) == {"in_progress": 2, "partial_complete": 3}
