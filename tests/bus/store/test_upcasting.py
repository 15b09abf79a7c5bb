"""Deploy v2 over stored v1 data: events written by the old code, read by the new one.

Rows are inserted with raw SQL, exactly as the v1 code stored them, so nothing of the
current write path can hide a reader that does not upcast."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain import uploads
from domain.commands import CompleteUpload, StoreChunk
from domain.events import EventMeta, RecordedEvent
from domain.registry import AGGREGATES
from domain.uploads import UploadStatus

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
UID = "7d0c2a52-5f7e-4bd4-9a55-0c8b1c0e0a11"
STREAM = f"upload-{UID}"


def sha(x: object) -> str:
    return hashlib.sha256(repr(x).encode()).hexdigest()


V1_INITIATED = {
    "upload_id": UID,
    "owner": "alice",
    "filename": "holiday.jpg",
    "file_size": 25,
    "chunk_size": 10,
    "total_chunks": 3,
    "content_type": "image/jpeg",
    "sha256": None,
    "bucket": "photos",
    "at": T0.isoformat(),
}
V1_CHUNK = {
    "index": 1,
    "offset": 10,
    "size": 10,
    "sha256": sha(1),
    "at": (T0 + timedelta(minutes=1)).isoformat(),
}


async def insert_raw(
    pool: asyncpg.Pool,
    stream_id: str,
    version: int,
    type_: str,
    schema_version: int,
    data: dict[str, Any],
    owner: str = "alice",
) -> int:
    """Store a row the way another deployment did (an older one, or a newer one: the
    newer-schema tests), owned by `owner`; return its position."""
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                """
                INSERT INTO eventstore.events (stream_id, version, position, event_id, event_type,
                                               schema_version, data, owner, occurred_at)
                VALUES ($1, $2, nextval('eventstore.position_seq'), $3, $4, $5,
                        $6::text::jsonb, $7, $8)
                RETURNING position
                """,
                stream_id,
                version,
                uuid.uuid4(),
                type_,
                schema_version,
                json.dumps(data),
                owner,
                T0 + timedelta(minutes=version),
            )
        )


async def store_v1_history(pool: asyncpg.Pool) -> tuple[int, int]:
    p1 = await insert_raw(pool, STREAM, 1, "UploadInitiated", 1, V1_INITIATED)
    p2 = await insert_raw(pool, STREAM, 2, "UploadChunkStored", 1, V1_CHUNK)
    return p1, p2


def assert_upcast_initiated(ev: RecordedEvent) -> None:
    assert ev.type == "UploadInitiated"
    assert ev.schema_version == 2
    assert ev.data["file_name"] == "holiday.jpg"
    assert "filename" not in ev.data
    assert ev.data["metadata"] == {}
    assert ev.data["bucket"] == "photos"
    assert ev.data["total_chunks"] == 3


async def test_read_stream_upcasts_stored_v1_events(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await store_v1_history(pool)
    got = await event_store.read_stream(STREAM)
    assert [(e.version, e.type) for e in got] == [(1, "UploadInitiated"), (2, "UploadChunkStored")]
    assert_upcast_initiated(got[0])
    assert got[0].occurred_at == T0 + timedelta(minutes=1)
    assert got[0].owner == "alice"
    assert got[1].schema_version == 1  # already current: untouched
    assert got[1].data == V1_CHUNK

    state = AGGREGATES["uploads"].fold(got)
    assert state.id == UID
    assert state.owner == "alice"
    assert state.file_name == "holiday.jpg"
    assert state.metadata == {}
    assert state.bucket == "photos"
    assert state.status == UploadStatus.IN_PROGRESS
    assert state.bytes_received == 10
    assert state.missing_chunks == [0, 2]
    assert state.created_at == T0


async def test_read_all_upcasts_stored_v1_events(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    p1, p2 = await store_v1_history(pool)
    got = await event_store.read_all(0)
    assert [e.position for e in got] == [p1, p2]
    assert_upcast_initiated(got[0])
    tail = await event_store.read_all(p1)
    assert [e.type for e in tail] == ["UploadChunkStored"]
    # The same upcast event goes out on Kafka as v2 and parses back to itself.
    assert RecordedEvent.from_envelope(got[0].envelope()) == got[0]
    assert got[0].envelope()["schema_version"] == 2


async def test_upcasting_is_on_read_only_the_stored_row_stays_v1(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await store_v1_history(pool)
    await event_store.read_stream(STREAM)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT schema_version, data FROM eventstore.events WHERE stream_id = $1"
            " AND version = 1",
            STREAM,
        )
    assert row["schema_version"] == 1
    assert row["data"] == V1_INITIATED


async def test_v2_code_continues_an_upload_started_under_v1(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    await store_v1_history(pool)
    agg = AGGREGATES["uploads"]
    meta = EventMeta(occurred_at=T0 + timedelta(hours=1), owner="alice")

    state = agg.fold(await event_store.read_stream(STREAM))
    version = await event_store.stream_version(STREAM)
    assert version == 2
    # A replay of the chunk stored by the old code is recognised.
    replay = StoreChunk(aggregate_id=UID, caller="alice", at=T0, index=1, size=10, sha256=sha(1))
    assert uploads.decide(state, replay) == []
    for index, size in ((0, 10), (2, 5)):
        cmd = StoreChunk(
            aggregate_id=UID, caller="alice", at=T0, index=index, size=size, sha256=sha(index)
        )
        new = agg.decide(state, cmd)
        await event_store.append(STREAM, version, new, meta)
        version += len(new)
        state = agg.fold(await event_store.read_stream(STREAM))

    done = agg.decide(
        state,
        CompleteUpload(aggregate_id=UID, caller="alice", at=T0, file_id="f-1", sha256=sha("all")),
    )
    await event_store.append(STREAM, version, done, meta)

    history = await event_store.read_stream(STREAM)
    assert [e.schema_version for e in history if e.type == "UploadInitiated"] == [2]
    final = agg.fold(history)
    assert final.status == UploadStatus.COMPLETED
    assert final.file_name == "holiday.jpg"
    assert final.file_id == "f-1"
    completed = history[-1]
    assert completed.type == "UploadCompleted"
    assert completed.data["manifest"] == [
        {"sha256": sha(0), "size": 10},
        {"sha256": sha(1), "size": 10},
        {"sha256": sha(2), "size": 5},
    ]
    assert sum(c["size"] for c in completed.data["manifest"]) == 25
    # read_all sees the mixed history (v1-stored and v2-written) all at current versions.
    everything = await event_store.read_all(0)
    assert [e.version for e in everything] == [1, 2, 3, 4, 5]
    assert agg.fold(everything) == final
